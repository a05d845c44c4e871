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


def cluster_ratio_ci(counts: Any, sizes: Any, confidence: float = CONFIDENCE) -> list[float] | None:
    """``[low, high]`` of the rate ``sum(counts) / sum(sizes)`` when whole clusters were sampled (each
    cluster in or out together, e.g. all copies of one row): the ratio estimator's delta-method interval
    over clusters (W. G. Cochran, *Sampling Techniques*, 3rd ed., 1977, §6.4), widened to at least the
    Clopper–Pearson interval of ``sum(counts)`` in ``sum(sizes)`` so that a sample with no event still
    states how high the rate could be."""
    from scipy.stats import norm

    a = np.asarray(counts, dtype=np.float64)
    m = np.asarray(sizes, dtype=np.float64)
    total = float(m.sum())
    if total <= 0:
        return None
    rate = float(a.sum()) / total
    k = len(m)
    var = (k / (k - 1)) * float(np.sum((a - rate * m) ** 2)) / total**2 if k > 1 else 0.0
    half = float(norm.ppf(0.5 + confidence / 2.0)) * np.sqrt(var)
    lo, hi = clopper_pearson(round(float(a.sum())), round(total), confidence)
    return [round(max(0.0, min(rate - half, float(lo))), 6), round(min(1.0, max(rate + half, float(hi))), 6)]


__all__ = ["CONFIDENCE", "clopper_pearson", "cluster_ratio_ci", "proportion_ci", "rate_ci"]
