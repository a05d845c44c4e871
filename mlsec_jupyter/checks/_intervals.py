"""Confidence intervals of rates a check estimates from the rows it looked at (a sample, often).

Clopper–Pearson ("exact") intervals of a binomial proportion (C. J. Clopper and E. S. Pearson, "The use of
confidence or fiducial limits illustrated in the case of the binomial", Biometrika 26, 1934): the
interval never undercovers, which is what a security card should err towards. The beta quantiles come from
scipy (a dependency of scikit-learn), imported when an interval is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Confidence level of every interval on a card.
CONFIDENCE = 0.95


def clopper_pearson(k: Any, n: Any, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper–Pearson interval of a binomial proportion ``k/n`` (vectorised)."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    alpha = 1.0 - confidence
    lower = np.where(k > 0, beta.ppf(alpha / 2.0, np.maximum(k, 1e-300), n - k + 1.0), 0.0)
    upper = np.where(k < n, beta.ppf(1.0 - alpha / 2.0, k + 1.0, np.maximum(n - k, 1e-300)), 1.0)
    return lower, upper


def proportion_ci(k: int, n: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """``[low, high]`` (6 decimals) of the rate ``k/n`` seen on ``n`` rows; ``None`` for no rows."""
    if n <= 0:
        return None
    lo, hi = clopper_pearson(min(max(int(k), 0), int(n)), int(n), confidence)
    return [round(float(lo), 6), round(float(hi), 6)]


def rate_ci(rate: float, n: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """The interval of a rate a check computed as a share of ``n`` rows (its count is ``round(rate·n)``)."""
    if n <= 0 or not np.isfinite(rate):
        return None
    return proportion_ci(round(float(rate) * n), n, confidence)


__all__ = ["CONFIDENCE", "clopper_pearson", "proportion_ci", "rate_ci"]
