"""``robustness.noise``: accuracy under random noise and simple corruptions, at the data's own scale.

Random perturbations are not attacks, but a model whose accuracy collapses under mild noise is brittle
in deployment and an easy target (an attacker barely needs to search). Following Hendrycks & Dietterich
(ICLR 2019, "Benchmarking neural network robustness to common corruptions"), the model is scored on
copies of the held-out rows with

* Gaussian noise of standard deviation σ per feature, σ in the data's own units or in each feature's
  standard deviations (:class:`._common.Scale`), clipped to the data's range, over a grid of σ;
* corruptions that fit any tabular or image data: missing values imputed with the column mean, a shift
  of every feature, salt-and-pepper values at the ends of each feature's range, and reduced contrast.

A randomized-smoothing certificate (Cohen, Rosenfeld & Kolter, ICML 2019, Thm. 1) is read off the same
noisy predictions: with ``p_A`` a lower confidence bound on the top class's probability under noise σ,
the smoothed classifier's prediction cannot change within L2 radius ``R = σ·Φ⁻¹(p_A)``
(:func:`smoothing_radius`). It says how robust the model *would* be if served with noise added.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._intervals import clopper_pearson
from .._models import BATCH_CELLS
from ..budget import Budget
from ._attacks import row_chunks
from ..registry import register_check
from ._common import (NotProbed, Scale, Target, check_eps, data_scale, is_classifier_probe, prepare_target, round_sig,
                      skipped)

CHECK = "robustness.noise"
#: σ grids: fractions of the data range ("data" units) or feature standard deviations ("std" units).
SIGMA_DATA = (0.02, 0.05, 0.1, 0.2, 0.3)
SIGMA_STD = (0.05, 0.1, 0.2, 0.5, 1.0)
#: The σ (index into the grid) at which the severity is read: mild noise.
MILD = 2
#: Rows scored, noisy copies per row, and rows / copies for the smoothing certificate.
MAX_ROWS = 1000
DRAWS = 4
CERT_ROWS, CERT_DRAWS = 100, 64
#: Confidence of the one-sided Clopper–Pearson bound on p_A (Cohen et al. use α = 0.001).
CERT_ALPHA = 0.001
#: Accuracy drop (points) at the mild σ for each severity (a corruption costing DROP_MEDIUM makes it LOW).
DROP_MEDIUM, DROP_LOW = 0.20, 0.05
_ADVICE = ("Augment training with noise and the corruptions that hurt (and check the accuracy on them before "
           "release); validate and impute inputs where the model is served; if noise robustness matters, "
           "serve a smoothed model (predict the majority under Gaussian noise), which also carries a certified "
           "L2 radius (Cohen et al. 2019).")


def smoothing_radius(p_a: Any, sigma: float, p_b: Any = None) -> np.ndarray:
    """Certified L2 radius of a smoothed classifier (Cohen et al. 2019, Thm. 1):
    ``σ/2·(Φ⁻¹(p_A) − Φ⁻¹(p_B))``, with ``p_B = 1 − p_A`` by default (then ``σ·Φ⁻¹(p_A)``); 0 where
    ``p_A ≤ p_B`` (the smoothed classifier abstains)."""
    from scipy.stats import norm

    pa = np.asarray(p_a, dtype=np.float64)
    pb = 1.0 - pa if p_b is None else np.asarray(p_b, dtype=np.float64)
    r = sigma / 2.0 * (norm.ppf(pa) - norm.ppf(pb))
    return np.where(pa > pb, r, 0.0)


def _lower_bound(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper–Pearson lower bound at level 1 − α: the lower end of the two-sided 1 − 2α interval."""
    return clopper_pearson(k, n, confidence=1.0 - 2.0 * alpha)[0]


def _noisy(values: np.ndarray, sc: Scale, sigma: float, rng: np.random.Generator, draws: int) -> np.ndarray:
    rows = np.repeat(values, draws, axis=0)
    noise = rng.standard_normal(rows.shape) * (sigma * sc.unit)
    lo, hi = np.minimum(sc.lower, rows), np.maximum(sc.upper, rows)
    return np.clip(rows + noise, lo, hi)


def corruptions(values: np.ndarray, sc: Scale, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Corrupted copies of ``values`` (see the module docstring), each named by what it does."""
    n, d = values.shape
    mean = values.mean(axis=0)
    out: dict[str, np.ndarray] = {}
    missing = values.copy()
    mask = rng.random((n, d)) < 0.1
    missing[mask] = np.broadcast_to(mean, (n, d))[mask]
    out["10% of features missing (filled with the column mean)"] = missing
    step = 0.05 * (sc.upper - sc.lower) if sc.kind == "data" else 0.2 * sc.unit
    out["every feature shifted up (+5% of the range)" if sc.kind == "data" else
        "every feature shifted up (+0.2 std)"] = np.clip(values + step, np.minimum(sc.lower, values),
                                                         np.maximum(sc.upper, values))
    salt = values.copy()
    mask = rng.random((n, d)) < 0.05
    ends = np.where(rng.random((n, d)) < 0.5, sc.lower, sc.upper)
    salt[mask] = ends[mask]
    out["salt-and-pepper (5% of values set to the range ends)"] = salt
    out["contrast reduced to 70%"] = mean + 0.7 * (values - mean)
    return out


@register_check(CHECK, applies_to="model", title="Noise robustness", requires=("training_data",), cost="fast")
def noise(*, model: Any, X: Any, y: Any = None, X_test: Any = None, y_test: Any = None,
          sigma: Any = None, scale: str = "auto", n_rows: int | None = None, budget: Budget) -> list[Finding]:
    """Accuracy under Gaussian noise over a grid of ``sigma`` (default: :data:`SIGMA_DATA` of the data range
    or :data:`SIGMA_STD` feature standard deviations) and under simple corruptions, on held-out rows when
    given (``X_test``, ``y_test``), plus a randomized-smoothing certificate."""
    if n_rows is not None and int(n_rows) < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows!r}.")
    if not is_classifier_probe(model):
        return [skipped(CHECK, "Noise robustness not checked",
                        f"{type(model).__name__} is a regressor; robustness is measured as classification accuracy.")]
    held_out = X_test is not None and y_test is not None
    try:
        target = prepare_target(model, *((X_test, y_test) if held_out else (X, y)), budget,
                                max_rows=int(n_rows or MAX_ROWS), name="X_test" if held_out else "X",
                                deterministic=True)
    except NotProbed as exc:
        return [skipped(CHECK, "Noise robustness not checked", exc.message, exc.severity)]
    sc = data_scale(target.values, scale)
    if sigma is None:
        fractions = SIGMA_DATA if sc.kind == "data" else SIGMA_STD
        width = float(sc.upper[0] - sc.lower[0]) if sc.kind == "data" else 1.0
        sigmas = sorted({round_sig(f * width) for f in fractions if f * width > 0})
    else:
        sigmas = check_eps(sigma, "sigma")
    if not sigmas:
        return [skipped(CHECK, "Noise robustness not checked", "Every feature is constant; there is no scale to "
                        "add noise at. Pass sigma=[...].")]
    rng = budget.rng()
    clean = float(np.mean(target.correct(target.values, budget)))
    accuracy = []
    chunks = row_chunks(target.n_rows, max(1, BATCH_CELLS // (max(DRAWS, CERT_DRAWS) * target.n_features)))
    for i, s in enumerate(sigmas):
        budget.progress(i / (len(sigmas) + 2), f"Gaussian noise σ {s:g}")
        hits = sum(int(np.sum(target.probe.predict(_noisy(target.values[c], sc, s, rng, DRAWS), budget)
                              == np.repeat(target.labels[c], DRAWS))) for c in chunks)
        accuracy.append(hits / (DRAWS * target.n_rows))
    budget.progress(len(sigmas) / (len(sigmas) + 2), "corruptions")
    corrupted = {name: float(np.mean(target.correct(rows, budget)))
                 for name, rows in corruptions(target.values, sc, rng).items()}
    budget.progress((len(sigmas) + 1) / (len(sigmas) + 2), "smoothing certificate")
    mild = sigmas[min(MILD, len(sigmas) - 1)]
    cert = _certificate(target, sc, mild, rng, budget)
    return [_finding(target, sc, sigmas, accuracy, clean, corrupted, mild, cert, held_out, budget)]


def _certificate(target: Target, sc: Scale, sigma: float, rng: np.random.Generator, budget: Budget) -> dict[str, Any]:
    """Certified accuracy at radius 0 and the median certified L2 radius (unit space) of the model smoothed
    with noise ``sigma``, on up to :data:`CERT_ROWS` rows (Cohen et al.'s CERTIFY with the same draws for
    choosing and bounding the top class, which makes the bound slightly optimistic)."""
    values, labels = target.values[:CERT_ROWS], target.labels[:CERT_ROWS]
    parts = []
    for c in row_chunks(len(values), max(1, BATCH_CELLS // (CERT_DRAWS * values.shape[1]))):
        noise = rng.standard_normal((len(values[c]) * CERT_DRAWS, values.shape[1])) * (sigma * sc.unit)
        parts.append(np.asarray(target.probe.predict(np.repeat(values[c], CERT_DRAWS, axis=0) + noise, budget)))
    pred = np.concatenate(parts).reshape(len(values), CERT_DRAWS)
    hits = (pred == labels[:, None]).sum(axis=1)
    top = np.array([max(np.unique(row, return_counts=True)[1]) for row in pred])
    correct_top = hits == top
    radius = np.where(correct_top, smoothing_radius(_lower_bound(hits, CERT_DRAWS, CERT_ALPHA), sigma), 0.0)
    certified = radius > 0
    return {"sigma": sigma, "certified_accuracy": float(np.mean(certified)),
            "median_certified_radius": float(np.median(radius[certified])) if certified.any() else 0.0,
            "rows": int(len(values)), "draws": CERT_DRAWS}


def _finding(target: Target, sc: Scale, sigmas: list[float], accuracy: list[float], clean: float,
             corrupted: dict[str, float], mild: float, cert: dict[str, Any], held_out: bool,
             budget: Budget) -> Finding:
    unit = "data units" if sc.kind == "data" else "feature standard deviations"
    at_mild = accuracy[sigmas.index(mild)]
    worst_name = min(corrupted, key=corrupted.get)
    drop = clean - at_mild
    severity = Severity.MEDIUM if drop >= DROP_MEDIUM else Severity.LOW if drop >= DROP_LOW else Severity.INFO
    if clean - corrupted[worst_name] >= DROP_MEDIUM:  # one corruption alone: worth a look, not an alarm
        severity = max(severity, Severity.LOW)
    metrics: dict[str, Any] = {
        "sigma": sigmas, "accuracy": [round(a, 4) for a in accuracy], "clean_accuracy": round(clean, 4),
        "sigma_unit": unit, "n_rows": target.n_rows, "rows": "held-out" if held_out else "training",
        "draws_per_row": DRAWS, "corruptions": {k: round(v, 4) for k, v in corrupted.items()},
        "smoothing": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in cert.items()},
    }
    if len(sigmas) >= 2:
        metrics["plot"] = {"kind": "line", "x": "sigma", "y": "accuracy", "x_label": f"noise σ ({unit})",
                           "y_label": "accuracy"}
    notes = list(dict.fromkeys(target.notes + budget.notes))
    if notes:
        metrics["notes"] = notes
    curve = ", ".join(f"{a:.2f} at σ {s:g}" for s, a in zip(sigmas, accuracy))
    bad = [f"{name}: {acc:.2f}" for name, acc in corrupted.items() if clean - acc >= DROP_LOW]
    summary = (f"Gaussian noise (σ in {unit}, clipped to the data's range, {DRAWS} draws per row) on "
               f"{target.n_rows:,} {metrics['rows']} rows: clean accuracy {clean:.3f}; {curve}. "
               + (f"Corruptions that hurt: {'; '.join(bad)}. " if bad else "No corruption costs 5 points or more. ")
               + f"Smoothed with σ {mild:g}, the model is certified on {cert['certified_accuracy']:.0%} of "
               f"{cert['rows']} rows (median L2 radius {cert['median_certified_radius']:.3g}).")
    if severity == Severity.INFO:
        title = f"Robust to mild noise: accuracy {clean:.2f} → {at_mild:.2f} at σ {mild:g}"
        return Finding(CHECK, severity, title, summary, metrics=metrics)
    if drop >= DROP_LOW:  # the noise itself sets the severity
        title = f"Mild noise costs accuracy: {clean:.2f} → {at_mild:.2f} at σ {mild:g} ({unit})"
    else:
        title = f"A simple corruption costs accuracy: {clean:.2f} → {corrupted[worst_name]:.2f} ({worst_name})"
    return Finding(CHECK, severity, title, summary, metrics=metrics, recommendation=_ADVICE)
