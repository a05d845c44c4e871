"""``model.extraction``: how cheaply an attacker who can query the model copies it.

Two attacks, both run only through the model's prediction interface (a torch module on the private
eval-mode copy of :class:`~mlsec_jupyter.checks._models.ModelProbe`; a scikit-learn estimator is only asked
``predict`` / ``predict_proba`` / ``decision_function`` and never fitted):

1. **Equation solving** (Tramèr, Zhang, Juels, Reiter & Ristenpart, "Stealing Machine Learning Models
   via Prediction APIs", USENIX Security 2016, §4.1). A logistic-regression model that returns
   probabilities reveals one linear equation per query: ``logit(p) = w·x + b`` (binary) or
   ``log(p_k / p_0) = (W_k − W_0)·x + (b_k − b_0)`` (multinomial softmax). ``d + 1`` linearly independent
   queries therefore determine the ``d + 1`` unknowns of every class exactly (for softmax up to its
   shift invariance, which does not change a single output). It applies when :func:`linear_form` gives
   ``(W, b)`` and ``predict_proba`` is numerically the sigmoid / softmax of the decision function
   (:func:`softmax_form`); one-vs-rest normalisation and other calibrations are not solved here, and the
   finding says why. Queries are Gaussian around the least saturated row of the attacker's data (an
   attacker sees the probabilities and can pick it), with a spread of :data:`QUERY_SPREAD` data units,
   halved until no probability saturates (a saturated ``p`` loses its logit to rounding); they are not
   clipped to the data's range (a feature that is constant in the data must still vary, or its weight is
   not identifiable). The same queries are solved again with probabilities rounded to
   :data:`ROUND_DECIMALS` decimals, to show what rounding does to the attack. A successful recovery is a
   critical finding.
2. **Surrogate sweep** (a label-only attacker; Papernot et al., "Practical Black-Box Attacks against
   Machine Learning", AsiaCCS 2017; Orekondy, Schiele & Fritz, "Knockoff Nets: Stealing Functionality
   of Black-Box Models", CVPR 2019; Tramèr et al. 2016 §5). The attacker queries ``N`` realistic inputs
   (rows of the data the model was trained on, then Gaussian perturbations of them once ``N`` exceeds
   those rows), keeps the model's predicted labels and trains a surrogate on them. The fidelity of the
   copy, its agreement with the model's own predictions on held-out rows (no true labels needed), is
   reported for a geometric grid of ``N`` (:data:`QUERY_GRID`). The surrogate is the worst case for a
   scikit-learn model, a fresh ``sklearn.base.clone`` of it (the attacker knows the architecture), and
   extremely randomised trees (:func:`fallback_surrogate`) for torch models or when the clone cannot be
   fitted.

Severity of the sweep (a copy matters once the model is served, which the notebook cannot know, so at
most medium): medium when a surrogate from at most :data:`QUERIES_HIGH` queries agrees on at least
:data:`FIDELITY_HIGH` of the rows, low for :data:`FIDELITY_MEDIUM` within :data:`QUERIES_MEDIUM`, info
otherwise (the title says "partial copy" from :data:`FIDELITY_LOW`); a level holds from the smallest N from which the
fidelity stays above its threshold at every larger N. Fidelity is compared with the agreement of a
constant guess (the model's most common prediction on the evaluation rows): a copy only counts when it
closes at least :data:`MIN_LIFT` of the gap between that baseline and 1.

Metrics: ``queries`` and ``fidelity`` (stable, same order), ``fit_seconds``, ``surrogates`` (per N:
clone / fallback / constant), ``surrogate``, ``baseline_fidelity``, ``n_eval``, ``eval_rows``,
``n_pool``, ``synthetic_from`` (first N with synthetic queries), ``queries_for_95``; the exact finding adds
``exact_recovery_queries``, ``max_relative_error`` (``max |θ̂ − θ| / max |θ|``), ``rounded_max_relative_error``,
``exact_fidelity``, ``n_features``, ``n_classes``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._models import seeded_clone
from .._tabular import UnsupportedData, n_samples, prepare_features
from ..budget import Budget, CheckCancelled, CheckTimeout
from ..registry import register_check
from ._common import (
    NotProbed,
    Target,
    data_scale,
    is_classifier_probe,
    linear_form,
    prepare_target,
)

CHECK = "model.extraction"

#: Query budgets tried by the surrogate sweep (each N is the first N queries of one query sequence).
QUERY_GRID = (25, 50, 100, 250, 500, 1000, 2500, 5000)
#: User-given query budgets may not exceed this.
MAX_QUERIES = 100_000
#: Rows of the attacker's query pool (taken from X), at most.
MAX_POOL = 20_000
#: Held-out rows on which fidelity is measured, at most.
MAX_EVAL = 2_000
#: Share of X held back for evaluation when no X_test is given.
EVAL_SHARE = 1 / 3
#: Fewer usable rows than this: not checked (fidelity on a handful of rows means nothing).
MIN_ROWS = 50
#: Synthetic queries (beyond the pool) are pool rows plus Gaussian noise of this many per-feature
#: standard deviations, clipped to the data's range (a Knockoff-style "natural" query distribution).
SYNTH_NOISE = 0.5
#: The sweep may use this share of the time remaining when it starts (one slow fit must not hold the
#: background worker for the whole budget).
SWEEP_SHARE = 0.6
#: Seconds kept back for the finding once the sweep is done.
RESERVE_SECONDS = 0.5
#: A fit on ``k`` times more queries is predicted to take ``k ** FIT_GROWTH`` times longer (between
#: linear models and kernel SVMs); the sweep stops before a fit predicted to overrun its share.
FIT_GROWTH = 1.5
#: Fits on up to this many queries are taken to cost about the same (fixed overheads dominate: 100 trees
#: take ~0.25 s on 50 or on 500 rows), so ``k`` is computed from max(N, SMALL_FIT).
SMALL_FIT = 500

# ---- equation solving
#: Spread of the d + 1 queries around their centre, in the data's units (data_scale: a standard
#: deviation per feature for mixed-scale tabular data, the data's own unit for pixels or standardised
#: data). 0.1 is the x ~ N(0, 0.1²) of reference-values §5 on standardised breast_cancer.
QUERY_SPREAD = 0.1
#: The spread is halved at most this many times to keep probabilities unsaturated.
SPREAD_HALVINGS = 12
#: Binary models: every probability of a query must be at least this (1 − p is computed by subtraction,
#: so its logit keeps only ~16 + log10(p) digits). Softmax probabilities are computed directly and only
#: need to be positive.
P_MIN_BINARY = 1e-6
#: Relative error (max |θ̂ − θ| / max |θ| over all weights and intercepts) below which the recovery is
#: called exact. Float64 equation solving gives ~1e-14; rounding the outputs gives > 1e-3.
EXACT_TOLERANCE = 1e-6
#: Decimals of the rounded-probability experiment.
ROUND_DECIMALS = 2
#: predict_proba is the sigmoid/softmax of the decision function when they agree to this (relative,
#: absolute) on sample rows.
PROBA_RTOL, PROBA_ATOL = 1e-6, 1e-9
#: Above this many features the exact attack is described but not run (its solve is O(d³), its matrix d²).
MAX_EXACT_FEATURES = 2_000
#: Rows used to verify the closed forms and to choose the query centre.
VERIFY_ROWS = 64
CENTRE_CANDIDATES = 500

# ---- severity of the sweep
# A label-only copy is a risk only once the model is served to people who may query it, which the
# notebook cannot know, and nearly every model on low-dimensional data can be copied from a few hundred
# labels; so the sweep alone is at most MEDIUM (the CRITICAL finding is the exact recovery).
#: medium: a copy agreeing on at least FIDELITY_HIGH of the rows from at most QUERIES_HIGH queries
FIDELITY_HIGH, QUERIES_HIGH = 0.95, 1_000
#: low: at least FIDELITY_MEDIUM from at most QUERIES_MEDIUM queries
FIDELITY_MEDIUM, QUERIES_MEDIUM = 0.90, 5_000
#: info (said in the title): a copy agreeing on at least FIDELITY_LOW at any budget tried
FIDELITY_LOW = 0.80
#: Fidelity counts only when (fidelity − baseline) / (1 − baseline) reaches this, where the baseline is
#: the agreement of always answering the model's most common prediction.
MIN_LIFT = 0.5

#: What the fallback surrogate (torch models, models that cannot be cloned) is called on the card.
FALLBACK_NAME = "extra-trees (100 trees) on the flat rows"

_ADVICE = ("Return labels only, not probabilities or logits; if scores are needed, round or truncate them "
           "(e.g. two decimals, top-1 only). Rate-limit and authenticate queries, and monitor query "
           "patterns for extraction (e.g. PRADA-style checks on the distribution of query distances). "
           "Watermark the model so a stolen copy can be recognised.")
_SKIP_ADVICE = ("Pass the fitted classifier with the rows it was trained on (X), and optionally held-out rows "
                "(X_test), as numbers, to measure how cheaply it can be copied.")


# ==================================================================================================
# equation solving (Tramèr et al. 2016, §4.1)
# ==================================================================================================
def _softmax(f: np.ndarray) -> np.ndarray:
    z = f - f.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_form(W: np.ndarray, b: np.ndarray, proba: np.ndarray, rows: np.ndarray) -> tuple[bool, str]:
    """Whether ``proba`` (``predict_proba`` of ``rows``) is the sigmoid (one row of ``W``, two classes) or
    the softmax (one row of ``W`` per class) of ``rows @ W.T + b``; with the reason when it is not."""
    f = rows @ W.T + b
    k = proba.shape[1]
    if W.shape[0] == 1 and k == 2:
        expected = np.column_stack([-f[:, 0], f[:, 0]]) / 2.0  # softmax of (−f/2, f/2) = (1 − σ(f), σ(f))
    elif W.shape[0] == k and k > 2:
        expected = f
    else:
        return False, f"{W.shape[0]} weight rows do not match {k} probability columns"
    if np.allclose(proba, _softmax(expected), rtol=PROBA_RTOL, atol=PROBA_ATOL):
        return True, ""
    return False, ("predict_proba is not the " + ("sigmoid" if k == 2 else "softmax") + " of the decision "
                   "function (e.g. one-vs-rest normalisation or a calibration), so the closed-form equation "
                   "solving of Tramèr et al. §4.1 was not applied")


def true_differences(W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What equation solving can recover of a linear model: ``(w, b)`` of a binary model, and
    ``(W_k − W_0, b_k − b_0)`` for k = 1..K−1 of a softmax model (softmax is shift invariant)."""
    if W.shape[0] == 1:
        return W.copy(), b.copy()
    return W[1:] - W[0], b[1:] - b[0]


def log_ratios(proba: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """``log(p_k / p_0)`` for k = 1..K−1 (the logit for two classes), probabilities floored at ``floor``."""
    p = np.maximum(np.asarray(proba, dtype=np.float64), floor)
    with np.errstate(divide="ignore"):
        logs = np.log(p)
    return logs[:, 1:] - logs[:, :1]


def solve_linear(queries: np.ndarray, targets: np.ndarray, centre: np.ndarray,
                 spread: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``[x 1]·[w; b] = t`` for ``d + 1`` queries ``x = centre + spread ∘ z`` (one column of ``t`` per
    unknown vector); the system is solved in the well-conditioned ``z`` coordinates and mapped back.
    Returns ``(W, b)`` with one row of ``W`` per column of ``targets``."""
    z = (queries - centre) / spread
    A = np.column_stack([z, np.ones(len(z))])
    theta = np.linalg.solve(A, targets)  # (d + 1) × m
    V, beta = theta[:-1].T, theta[-1]
    W = V / spread
    return W, beta - W @ centre


def relative_error(W_hat: np.ndarray, b_hat: np.ndarray, W: np.ndarray, b: np.ndarray) -> float:
    """``max |θ̂ − θ| / max |θ|`` over all weights and intercepts (inf when anything is not finite)."""
    est = np.concatenate([np.ravel(W_hat), np.ravel(b_hat)])
    true = np.concatenate([np.ravel(W), np.ravel(b)])
    if not np.all(np.isfinite(est)):
        return float("inf")
    scale = float(np.max(np.abs(true))) or 1.0
    return float(np.max(np.abs(est - true)) / scale)


@dataclass
class Recovery:
    """The result of one equation-solving attack."""

    W: np.ndarray
    b: np.ndarray
    queries: np.ndarray
    proba: np.ndarray
    centre: np.ndarray
    spread: np.ndarray


def equation_solving(predict_proba: Callable[[np.ndarray], np.ndarray], centre: np.ndarray, unit: np.ndarray,
                     rng: np.random.Generator, *, spread: float = QUERY_SPREAD,
                     halvings: int = SPREAD_HALVINGS) -> Recovery:
    """Tramèr et al.'s equation-solving attack on a model that returns sigmoid/softmax probabilities.

    ``d + 1`` queries ``centre + spread·unit ∘ z`` (``z`` standard normal; the spread is halved until no
    probability saturates) are sent to ``predict_proba`` and ``log(p_k / p_0) = (W_k − W_0)·x + b_k − b_0``
    is solved for every k ≥ 1. Returns the recovered differences (``w, b`` for a binary model).
    """
    centre = np.asarray(centre, dtype=np.float64).reshape(-1)
    d = centre.size
    z = rng.standard_normal((d + 1, d))
    t = float(spread)
    for _ in range(halvings + 1):
        s = t * np.asarray(unit, dtype=np.float64)
        queries = centre + s * z
        proba = np.asarray(predict_proba(queries), dtype=np.float64)
        floor = P_MIN_BINARY if proba.shape[1] == 2 else np.finfo(np.float64).tiny
        if proba.min() >= floor:
            break
        t /= 2.0
    W, b = solve_linear(queries, log_ratios(proba), centre, s)
    return Recovery(W, b, queries, proba, centre, s)


@dataclass
class ExactResult:
    """Outcome of the exact attack on the user's model (``finding`` is set when it succeeded)."""

    finding: Finding | None = None
    note: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


def _exact_attack(model: Any, target: Target, pool: np.ndarray, eval_rows: np.ndarray, eval_pred: np.ndarray,
                  budget: Budget, rng: np.random.Generator) -> ExactResult:
    probe = target.probe
    if probe.is_torch:
        return ExactResult()
    form = linear_form(model)
    if form is None:
        return ExactResult()
    # a Pipeline's predict_proba exists on the class but only works when its last step has one
    # (available_if); the model is a scikit-learn linear classifier here, so asking the instance is safe
    if not callable(getattr(type(model), "predict_proba", None)) or not hasattr(model, "predict_proba"):
        return ExactResult(note="the model is linear but offers no predict_proba; equation solving needs "
                                "confidence scores (an API returning decision scores would be as exposed)")
    W, b = form

    def proba(rows: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_proba(probe.estimator_input(rows)), dtype=np.float64)

    try:
        sample = pool[:VERIFY_ROWS]
        got = np.asarray(model.decision_function(probe.estimator_input(sample)), dtype=np.float64)
        got = got.reshape(len(sample), -1)
        mine = sample @ W.T + b
        if got.shape != mine.shape or not np.allclose(mine, got, rtol=1e-6, atol=1e-9 * (1 + np.abs(got).max())):
            return ExactResult(note="the model's coef_/intercept_ do not reproduce its decision_function, so "
                                    "equation solving was not applied")
        ok, why = softmax_form(W, b, proba(sample), sample)
    except (ValueError, TypeError, AttributeError) as exc:
        return ExactResult(note=f"equation solving not applied: the model's outputs could not be read "
                                f"({type(exc).__name__})")
    if not ok:
        return ExactResult(note=why)
    d = pool.shape[1]
    if d > MAX_EXACT_FEATURES:
        return ExactResult(note=f"the model is linear with sigmoid/softmax probabilities, so d + 1 = {d + 1:,} "
                                f"queries would recover it exactly (Tramèr et al. §4.1); the attack was not run "
                                f"here (more than {MAX_EXACT_FEATURES:,} features)")
    budget.checkpoint()
    try:
        # the attacker centres its queries on the least saturated row it has (it sees the probabilities)
        cand = pool[rng.choice(len(pool), size=min(CENTRE_CANDIDATES, len(pool)), replace=False)]
        cand = np.vstack([pool.mean(axis=0), cand])
        p_cand = proba(cand)
        centre = cand[int(np.argmax(np.log(np.maximum(p_cand, 1e-300)).min(axis=1)))]
        unit = data_scale(pool).unit
        rec = equation_solving(proba, centre, unit, rng)
    except (ValueError, TypeError, AttributeError, np.linalg.LinAlgError) as exc:
        return ExactResult(note=f"equation solving failed ({type(exc).__name__}: {str(exc)[:120]})")
    W_true, b_true = true_differences(W, b)
    err = relative_error(rec.W, rec.b, W_true, b_true)
    rounded = np.round(rec.proba, ROUND_DECIMALS)
    W_r, b_r = solve_linear(rec.queries, log_ratios(rounded, floor=0.5 * 10.0 ** -ROUND_DECIMALS), rec.centre,
                            rec.spread)
    err_rounded = relative_error(W_r, b_r, W_true, b_true)
    # the recovered model's agreement with the target (argmax over [0, log-ratios])
    f_hat = np.column_stack([np.zeros(len(eval_rows)), eval_rows @ rec.W.T + rec.b])
    classes = np.asarray(getattr(model, "classes_", np.arange(f_hat.shape[1])))
    agree = float(np.mean(classes[f_hat.argmax(axis=1)] == eval_pred)) if len(classes) == f_hat.shape[1] else None
    k = rec.proba.shape[1]
    n_q = len(rec.queries)
    metrics = {"exact_recovery_queries": n_q, "max_relative_error": err,
               "rounded_decimals": ROUND_DECIMALS, "rounded_max_relative_error": err_rounded,
               "exact_fidelity": agree, "n_features": d, "n_classes": k,
               "query_spread": float(rec.spread.max() / max(unit.max(), 1e-300)),
               "recovered": "w, b" if k == 2 else "W_k − W_0, b_k − b_0 (softmax is shift invariant)"}
    if not err <= EXACT_TOLERANCE:
        return ExactResult(note=f"equation solving with {n_q} queries left a relative error of {err:.2g} "
                                f"(above {EXACT_TOLERANCE:g}; the probabilities may be saturated or altered)",
                           metrics=metrics)
    what = "its weights" if k == 2 else "its weights (up to softmax's shift)"
    title = f"Probabilities expose the model: {n_q} queries recover {what} exactly"
    solved = ("logit(p) = w·x + b" if k == 2 else "log(p_k / p_0) = (W_k − W_0)·x + (b_k − b_0) for each of "
              f"the {k - 1} classes k ≥ 1")
    summary = (f"The model is linear in its {d} features and returns probabilities that are exactly the "
               f"{'sigmoid' if k == 2 else 'softmax'} of its decision function. Each query gives one linear "
               f"equation, {solved}, so {n_q} = d + 1 queries around a data row solved for every weight and "
               f"intercept with a maximum relative error of {err:.1e} (Tramèr et al., USENIX Security 2016, "
               f"§4.1); the recovered copy agrees with the model on "
               + (f"{agree:.1%}" if agree is not None else "its")
               + f" held-out rows. With probabilities rounded to {ROUND_DECIMALS} decimals the same queries "
               f"give a relative error of {err_rounded:.2g}: rounding stops the exact recovery (an attacker "
               f"then needs many more queries for an approximate copy).")
    finding = Finding(CHECK, Severity.CRITICAL, title, summary, metrics=metrics,
                      recommendation=_ADVICE)
    return ExactResult(finding=finding, metrics=metrics)


# ==================================================================================================
# the surrogate sweep
# ==================================================================================================
class _Constant:
    """The surrogate of a query set with one label: always that label."""

    def __init__(self, label: Any) -> None:
        self.label = label

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.label)


def fallback_surrogate(n_queries: int, seed: int) -> Any:
    """The attacker's generic surrogate: extremely randomised trees (Geurts et al. 2006), 100 of them.

    Chosen over a small MLP because they need no feature scaling or tuning, handle any number of classes
    and do not use BLAS: on a busy 2-core machine an MLP's many tiny matrix products were 10–50× slower
    (a 250-query MLP fit took 6.6 s), while the trees fit 5,000 digits queries in under a second and
    reached a fidelity as high (0.98 vs 0.96 against an RBF-SVM on digits).
    """
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=100, random_state=seed, n_jobs=1)


def _label_key(a: np.ndarray) -> np.ndarray:
    """Labels as comparable values: text for object/str labels (mixed types compare by their text)."""
    return a.astype(str) if a.dtype.kind in "OUS" else a


@dataclass
class Sweep:
    queries: list[int]
    fidelity: list[float]
    seconds: list[float]
    surrogates: list[str]
    notes: list[str]


def _fit_one(kind: str, model: Any, probe: Any, rows: np.ndarray, labels: np.ndarray, eval_rows: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    if kind == "clone":
        est = seeded_clone(model, rng)
        est.fit(probe.estimator_input(rows), labels)
        return np.asarray(est.predict(probe.estimator_input(eval_rows))).reshape(-1)
    est = fallback_surrogate(len(rows), int(rng.integers(2**31 - 1)))
    est.fit(rows, _label_key(labels))
    return np.asarray(est.predict(eval_rows)).reshape(-1)


def surrogate_sweep(model: Any, probe: Any, queries: np.ndarray, labels: np.ndarray, eval_rows: np.ndarray,
                    eval_pred: np.ndarray, grid: Sequence[int], budget: Budget,
                    rng: np.random.Generator) -> Sweep:
    """Fidelity of a surrogate trained on the first ``N`` (query, label) pairs, for each ``N`` of ``grid``.

    Stops before a fit predicted (from the last one, ``× (N'/N) ** FIT_GROWTH`` with N, N' floored at
    :data:`SMALL_FIT`) to overrun :data:`SWEEP_SHARE` of the time remaining, or when a checkpoint says the
    budget is spent. A surrogate that cannot be fitted on some N is replaced by the fallback there (and by a
    constant, the most common label, if that fails too); ``surrogates`` says which was used for each N.
    """
    out = Sweep([], [], [], [], [])
    kind = "fallback" if probe.is_torch else "clone"
    if kind == "clone":
        try:
            from sklearn.base import clone

            clone(model)
        except Exception as exc:
            kind = "fallback"
            out.notes.append(f"the model could not be cloned ({type(exc).__name__}); the surrogate is {FALLBACK_NAME}")
    share = SWEEP_SHARE * max(budget.remaining, 0.0)
    start = time.monotonic()
    last_n, last_s = 0, 0.0
    failed: dict[str, list[str]] = {}
    want = _label_key(np.asarray(eval_pred))
    for i, n in enumerate(grid):
        try:
            budget.progress(i / len(grid), f"surrogate on {n:,} queries")
        except CheckTimeout:
            out.notes.append(f"sweep stopped before N = {n:,}: the time budget ran out")
            break
        if last_n:
            predicted = last_s * (max(n, SMALL_FIT) / max(last_n, SMALL_FIT)) ** FIT_GROWTH
            used = time.monotonic() - start
            if used + predicted > share or budget.remaining < predicted + RESERVE_SECONDS:
                out.notes.append(f"sweep stopped before N = {n:,}: the next surrogate (~{predicted:.1f} s) would "
                                 f"exceed the sweep's share of the time budget ({share:.1f} s); raise the "
                                 f"time budget for larger query budgets")
                break
        t0 = time.monotonic()
        rows, ys = queries[:n], labels[:n]
        keys = _label_key(ys)
        used_kind = kind
        if len(np.unique(keys)) < 2:
            pred, used_kind = _Constant(ys[0]).predict(eval_rows), "constant"
        else:
            pred = None
            for attempt in ((kind, "fallback") if kind == "clone" else ("fallback",)):
                try:
                    pred = _fit_one(attempt, model, probe, rows, ys, eval_rows, rng)
                    used_kind = attempt
                    break
                except (CheckTimeout, KeyboardInterrupt):
                    raise
                except Exception as exc:
                    failed.setdefault(attempt, []).append(f"{n:,} ({type(exc).__name__})")
            if pred is None:
                values, counts = np.unique(keys, return_counts=True)
                top = values[int(np.argmax(counts))]
                pred, used_kind = _Constant(ys[int(np.flatnonzero(keys == top)[0])]).predict(eval_rows), "constant"
        agree = _label_key(np.asarray(pred).reshape(-1)) == want
        out.queries.append(int(n))
        out.fidelity.append(float(np.mean(agree)))
        last_n, last_s = n, time.monotonic() - t0
        out.seconds.append(round(last_s, 4))
        out.surrogates.append(used_kind)
    for attempt, where in failed.items():
        what = f"the clone of {type(model).__name__}" if attempt == "clone" else "the fallback surrogate"
        out.notes.append(f"{what} could not be fitted at N = {', '.join(where)}")
    return out


# ==================================================================================================
# inputs
# ==================================================================================================
def _predict(probe: Any, rows: np.ndarray, budget: Budget) -> tuple[np.ndarray, str]:
    """The model's labels for ``rows`` (argmax of a torch model's logits; a single logit is binary)."""
    if probe.is_torch:
        return probe.outputs(rows, budget)[1].argmax(axis=1), ""  # a single logit z comes back as [0, z]
    return np.asarray(probe.predict(rows, budget)).reshape(-1), ""


def _looks_continuous(pred: np.ndarray) -> bool:
    if pred.dtype.kind != "f":
        return False
    finite = pred[np.isfinite(pred)]
    return bool(len(np.unique(finite)) > 20 and np.any(finite != np.round(finite)))


def _query_grid(queries: Any) -> list[int]:
    if queries is None:
        return list(QUERY_GRID)
    values = [queries] if np.isscalar(queries) else list(queries)
    try:
        grid = sorted({int(q) for q in values})
        exact = all(float(q) == int(q) for q in values)
    except (TypeError, ValueError):
        raise ValueError(f"queries must be a list of positive whole numbers, got {queries!r}.") from None
    if not grid or not exact or grid[0] < 1 or grid[-1] > MAX_QUERIES:
        raise ValueError(f"queries must be whole numbers from 1 to {MAX_QUERIES:,}, got {queries!r}; "
                         f"e.g. queries=[50, 500, 5000].")
    return grid


def _eval_from(X_test: Any, d: int, budget: Budget, rng: np.random.Generator) -> tuple[np.ndarray | None, str]:
    """Finite numeric rows of ``X_test`` (at most MAX_EVAL), or ``None`` and why they cannot be used."""
    try:
        table = prepare_features(X_test, budget, name="X_test", allow_nd=True)
    except UnsupportedData as exc:
        return None, f"X_test not used ({exc.message})"
    if not all(k in ("numeric", "bool") for k in table.column_kinds):
        return None, "X_test not used (it has non-numeric columns)"
    values = table.values
    if values.shape[1] != d:
        return None, f"X_test not used (it has {values.shape[1]} features, X has {d})"
    values = values[np.isfinite(values).all(axis=1)]
    if len(values) > MAX_EVAL:
        values = values[np.sort(rng.choice(len(values), size=MAX_EVAL, replace=False))]
    if len(values) < 10:
        return None, "X_test not used (fewer than 10 finite rows)"
    return np.ascontiguousarray(values), ""


def make_queries(pool: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``n`` attacker queries: the pool's rows in random order, then pool rows plus Gaussian noise of
    :data:`SYNTH_NOISE` per-feature standard deviations, clipped to the range the data spans. Returns the
    queries and how many of them are real rows."""
    order = rng.permutation(len(pool))
    real = pool[order[:n]]
    extra = n - len(real)
    if extra <= 0:
        return np.ascontiguousarray(real), len(real)
    scale = data_scale(pool)
    std = pool.std(axis=0)
    base = pool[rng.integers(0, len(pool), size=extra)]
    synth = scale.clip(base + SYNTH_NOISE * std * rng.standard_normal(base.shape))
    return np.ascontiguousarray(np.vstack([real, synth])), len(real)


# ==================================================================================================
# the check
# ==================================================================================================
def _skipped(message: str, severity: Severity = Severity.INFO) -> Finding:
    return Finding(CHECK, severity, "Model extraction not checked", message,
                   metrics={"skipped": True, "queries": [], "fidelity": []}, recommendation=_SKIP_ADVICE)


def _severity(queries: list[int], fidelity: list[float], baseline: float) -> tuple[Severity, int | None, float]:
    """Severity of the sweep, the N that decides it and that N's fidelity.

    A level holds from the smallest N (within its query limit) from which the fidelity stays at or above
    its threshold for every larger N tried, so one lucky small sample does not decide it.
    """
    def counts(f: float) -> bool:
        return baseline < 1.0 and (f - baseline) / (1.0 - baseline) >= MIN_LIFT

    for sev, fid_min, q_max in ((Severity.MEDIUM, FIDELITY_HIGH, QUERIES_HIGH),
                                (Severity.LOW, FIDELITY_MEDIUM, QUERIES_MEDIUM),
                                (Severity.INFO, FIDELITY_LOW, MAX_QUERIES)):
        for i, n in enumerate(queries):
            if n <= q_max and all(f >= fid_min and counts(f) for f in fidelity[i:]):
                return sev, n, fidelity[i]
    return Severity.INFO, None, max(fidelity) if fidelity else float("nan")


@register_check(CHECK, applies_to="model", title="Model extraction", requires=("training_data",), cost="slow")
def extraction(*, model: Any, X: Any = None, y: Any = None, X_test: Any = None, y_test: Any = None,
               framework: str = "other", queries: Sequence[int] | None = None, budget: Budget) -> list[Finding]:
    """Equation-solving extraction of probability-returning linear models and a label-only surrogate sweep.

    ``X``: rows the attacker's queries are drawn from (the model's training data or similar; required).
    ``X_test``: rows fidelity is measured on (at most :data:`MAX_EVAL`); without it a random third of ``X``
    is held back. Labels (``y``, ``y_test``) are not needed: fidelity is agreement with the model's own
    predictions. ``queries``: the query budgets of the sweep (default :data:`QUERY_GRID`).
    """
    grid = _query_grid(queries)
    if X is None:
        return [_skipped("No data (X) was given to draw the attacker's queries from; model extraction not checked.")]
    if not is_classifier_probe(model):
        return [_skipped(f"{type(model).__name__} is a regressor; model extraction is measured for classifiers "
                         f"(fidelity = agreement of predicted labels).")]
    n_x = n_samples(X)
    if n_x is None:
        return [_skipped(f"X of type {type(X).__name__} is not a supported data type (numpy, pandas, scipy sparse, "
                         f"torch tensor, list of rows); model extraction not checked.")]
    budget.checkpoint()
    try:
        # labels are not needed: placeholder zeros let prepare_target read the rows and build the probe
        target = prepare_target(model, X, np.zeros(n_x, dtype=np.int64), budget,
                                max_rows=min(MAX_POOL + MAX_EVAL, max(budget.max_rows, 1)))
    except NotProbed as exc:
        return [_skipped(f"{exc.message} Model extraction not checked.", exc.severity)]
    budget.checkpoint()
    rng = budget.rng()
    notes = list(target.notes)
    values = target.values
    d = values.shape[1]
    eval_rows, why = (None, "") if X_test is None else _eval_from(X_test, d, budget, rng)
    if why:
        notes.append(why)
    if eval_rows is None:
        if len(values) < MIN_ROWS:
            return [_skipped(f"Needs at least {MIN_ROWS} usable rows of X; got {len(values):,}. "
                             f"Model extraction not checked.")]
        order = rng.permutation(len(values))
        n_eval = min(MAX_EVAL, round(len(values) * EVAL_SHARE))
        eval_rows, pool = values[np.sort(order[:n_eval])], values[np.sort(order[n_eval:])]
        source = f"{n_eval:,} held-back rows of X"
    else:
        if len(values) < MIN_ROWS // 2:
            return [_skipped(f"Needs at least {MIN_ROWS // 2} usable rows of X to draw queries from; got "
                             f"{len(values):,}. Model extraction not checked.")]
        pool = values[:MAX_POOL] if len(values) <= MAX_POOL else values[np.sort(rng.choice(len(values), MAX_POOL,
                                                                                          replace=False))]
        source = f"{len(eval_rows):,} rows of X_test"
    probe = target.probe
    try:
        eval_pred, note = _predict(probe, eval_rows, budget)
    except (CheckTimeout, CheckCancelled, KeyboardInterrupt):
        raise
    except Exception as exc:
        return [_skipped(f"The model could not predict the evaluation rows ({type(exc).__name__}: "
                         f"{str(exc)[:160]}); model extraction not checked.", Severity.LOW)]
    if note:
        notes.append(note)
    if _looks_continuous(eval_pred):
        return [_skipped(f"{type(model).__name__} predicts continuous values (a regressor); model extraction is "
                         f"measured for classifiers.")]
    budget.checkpoint()

    exact = _exact_attack(model, target, pool, eval_rows, eval_pred, budget, rng)
    if exact.note:
        notes.append(exact.note)

    budget.checkpoint()
    n_max = grid[-1]
    qrows, n_real = make_queries(pool, n_max, rng)
    try:
        try:
            qlabels, _ = _predict(probe, qrows, budget)
        except (CheckTimeout, CheckCancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # a model that refuses the synthetic rows: real rows only
            if n_real == n_max:
                raise
            notes.append(f"the model could not predict the synthetic queries ({type(exc).__name__}); the sweep "
                         f"uses the {n_real:,} real rows only")
            qrows, n_max = qrows[:n_real], n_real
            grid = [n for n in grid if n <= n_real] or [n_real]
            qlabels, _ = _predict(probe, qrows, budget)
        sweep = surrogate_sweep(model, probe, qrows, qlabels, eval_rows, eval_pred, grid, budget, rng)
    except CheckTimeout:
        if exact.finding is None:
            raise
        sweep = Sweep([], [], [], [], ["the surrogate sweep did not run: the time budget ran out"])
    notes.extend(sweep.notes)
    for n in budget.notes:
        if n not in notes:
            notes.append(n)

    keys = _label_key(eval_pred)
    _, counts = np.unique(keys.astype(str), return_counts=True)
    baseline = float(counts.max() / counts.sum())
    metrics: dict[str, Any] = {
        "queries": sweep.queries, "fidelity": [round(f, 6) for f in sweep.fidelity],
        "fit_seconds": sweep.seconds, "surrogates": sweep.surrogates,
        "surrogate": _surrogate_name(model, probe, sweep.surrogates),
        "baseline_fidelity": round(baseline, 6), "n_eval": len(eval_rows), "eval_rows": source,
        "n_pool": len(pool), "synthetic_from": int(n_real) if n_real < n_max else None,
        # the smallest N from which the surrogate agrees on ≥ 95 % of rows at every larger N tried
        "queries_for_95": next((n for i, n in enumerate(sweep.queries) if min(sweep.fidelity[i:]) >= 0.95), None),
    }
    if exact.finding is not None:
        metrics["exact_recovery_queries"] = exact.metrics["exact_recovery_queries"]
    if len(sweep.queries) >= 2:
        # drawn by render/plots.py as a small log-x curve
        metrics["plot"] = {"kind": "line", "x": "queries", "y": "fidelity", "x_label": "label-only queries",
                           "y_label": "fidelity (agreement)", "log_x": True}
    if notes:
        metrics["notes"] = notes
    findings: list[Finding] = []
    if exact.finding is not None:
        m = {**exact.finding.metrics, "queries": metrics["queries"], "fidelity": metrics["fidelity"]}
        findings.append(dataclasses.replace(exact.finding, metrics=m))
    findings.append(_sweep_finding(metrics, sweep, baseline, source, n_real, n_max, len(pool)))
    return findings


def _surrogate_name(model: Any, probe: Any, used: list[str]) -> str:
    if probe.is_torch:
        return FALLBACK_NAME
    if "clone" in used or not used:
        return f"clone of {type(model).__name__}"
    return FALLBACK_NAME if "fallback" in used else "a constant (every query got the same label)"


def _sweep_finding(metrics: dict[str, Any], sweep: Sweep, baseline: float, source: str, n_real: int,
                   n_max: int, n_pool: int) -> Finding:
    qs, fs = sweep.queries, sweep.fidelity
    who = metrics["surrogate"]
    if not qs:
        return Finding(CHECK, Severity.INFO, "Model extraction sweep not run",
                       "The label-only surrogate sweep did not run: "
                       + ("; ".join(sweep.notes) or "no query budget was tried") + ".",
                       metrics=metrics, recommendation=_ADVICE)
    severity, n_at, f_at = _severity(qs, fs, baseline)
    curve = ", ".join(f"{n:,} → {f:.1%}" for n, f in zip(qs, fs))
    synth = (f"queries beyond the {n_real:,} rows of X drawn for the attacker are those rows plus Gaussian noise "
             f"({SYNTH_NOISE:g} standard deviation per feature)" if n_real < qs[-1]
             else f"queries are rows of X ({n_pool:,} available)")
    how = (f"A label-only attacker queried N inputs, kept the model's predicted labels and trained a surrogate "
           f"({who}); fidelity is its agreement with the model on {source} (a constant guess agrees on "
           f"{baseline:.1%}). N → fidelity: {curve}. The {synth}.")
    tail = ""
    if sweep.notes:
        tail = " Note: " + "; ".join(sweep.notes) + "."
    if severity == Severity.MEDIUM:
        title = (f"If served, the model can be copied: {n_at:,} label-only queries give a {f_at:.1%}-agreeing "
                 f"surrogate")
    elif severity == Severity.LOW:
        title = (f"If served, the model can be approximated: {n_at:,} label-only queries give a "
                 f"{f_at:.1%}-agreeing surrogate")
    elif n_at is not None:
        title = f"Partial copy: a surrogate from {n_at:,} queries agrees on {f_at:.1%} of rows"
    elif baseline >= 1.0:
        title = "The model predicts one class on every evaluation row; fidelity says nothing here"
    elif max(fs) >= FIDELITY_LOW:
        title = (f"No copy beyond a constant guess from {qs[-1]:,} label-only queries (best fidelity "
                 f"{max(fs):.1%}, constant guess {baseline:.1%})")
    else:
        title = f"No close copy from {qs[-1]:,} label-only queries (best fidelity {max(fs):.1%})"
    summary = how + tail
    advice = _ADVICE if severity >= Severity.LOW or n_at is not None else ""
    return Finding(CHECK, severity, title, summary, metrics=metrics, recommendation=advice)
