"""``privacy.membership``: how well an attacker can tell the model's training rows from other rows.

Members are the rows the model was fitted on (``X``, ``y``); non-members are held-out rows
(``X_test``, ``y_test``). The same number of each is drawn with the budget's private RNG (at most
:data:`MAX_PER_SIDE`), so the attack's advantage and accuracy read as on a balanced prior.

Attacks
-------
1. **Loss threshold** (Yeom et al., CSF 2018): a row whose loss is low is called a member. The per-row
   statistic is the cross-entropy of the true label (``predict_proba``; ranked as the logit-scaled
   ``log p − log Σ_other p``, the same order as the loss but still resolved where ``p`` rounds to 1 and
   the loss to 0), the signed margin of the true
   class (``decision_function`` only) or correctness 0/1 (``predict`` only: a weak attack, and the
   finding says so). torch ``nn.Module`` classifiers are run on a deep copy in eval mode under
   ``torch.no_grad()``; the user's module is never switched to eval, hooked or changed.
2. **Shadow models, LiRA offline** (Carlini et al., S&P 2022, arXiv 2112.03570), scikit-learn models
   only. ``K`` clones of the model (``sklearn.base.clone``: the user's object is never fitted) are each
   trained on a random half of the held-out rows; each held-out row is in the training half of exactly
   ``K/2`` of them (LiRA's balanced assignment). For every evaluated row the logit-scaled confidence
   ``φ = log(p / (1 − p))`` of its true class is computed on the shadows that did **not** train on it
   (the OUT set: all ``K`` for members, which no shadow ever saw; about ``K/2`` for a held-out row),
   and the row's score is ``(φ_target − mean_OUT) / std_OUT``, the one-sided Gaussian likelihood ratio
   of the offline attack. With fewer than :data:`PER_EXAMPLE_VARIANCE_MIN` OUT shadows per row the
   standard deviation is the global one pooled over all rows (LiRA's "fixed variance", which the paper
   finds better with few shadows). Shadows stop early when the time budget runs short; the result then
   uses the shadows done so far and says so. ``shadow_pool="all"`` adds the evaluated training rows to
   the shadows' pool as in the paper (shadows nearer the target's training size; every row, member or
   not, is scored against the shadows that did not train on it; on the MLP of
   bench/privacy_membership.py it raised the AUC from 0.63 to 0.65).
3. **Structural checks** (cheap, in the style of SACRO-ML): train/test accuracy gap; leaves of decision
   trees and tree ensembles holding a single training row; k-nearest neighbours with k = 1.

Metrics (:func:`attack_metrics`)
--------------------------------
ROC of the membership scores (member = positive, higher score = "member"), AUC (Mann–Whitney, ties
count half) with a DeLong 95 % interval, TPR at 1 % and 0.1 % FPR (the best ROC point whose FPR is at
most the target: no interpolation, so never optimistic), membership advantage ``max(TPR − FPR)`` and an
empirical ε lower bound: for every threshold, ``ε ≥ ln((1 − δ − FPR)/FNR)`` and
``ε ≥ ln((1 − δ − FNR)/FPR)``, with FPR and FNR replaced by the upper ends of their 95 %
Clopper–Pearson intervals, maximised over thresholds (Jagielski et al., NeurIPS 2020, arXiv 2006.07709;
as TF Privacy's ``epsilon_lower_bound``). Maximising over thresholds on the same rows is what those
tools do; it slightly favours larger bounds, and a bound from different members and non-members is an
audit heuristic, not a proof. :func:`dp_max_tpr` and :func:`dp_max_advantage` give the (ε, δ)-DP
limits any attack must respect (Kairouz, Oh & Viswanath, ICML 2015), and :func:`compare_with_dp`
turns an empirical bound above the accounted ε into a critical finding (a DP implementation bug).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._intervals import clopper_pearson
from .._models import seeded_clone
from .._parallel import BackendError, sweep
from .._tabular import n_samples
from ..budget import Budget, CheckCancelled, CheckTimeout
from ..registry import register_check

CHECK = "privacy.membership"

#: Members and non-members looked at, each (the same number of both).
MAX_PER_SIDE = 5_000
#: Fewer rows than this on either side: not audited (the interval would cover everything).
MIN_PER_SIDE = 20
#: Shadow models of the LiRA-offline attack (``n_shadow`` overrides it).
N_SHADOW = 8
#: Fewer finished shadows than this: the shadow attack is not reported.
MIN_SHADOWS = 2
#: With at least this many OUT shadows per row, each row gets its own standard deviation.
PER_EXAMPLE_VARIANCE_MIN = 16
#: Held-out rows the shadows are trained on (halves of), at most.
MAX_SHADOW_POOL = 20_000
#: Seconds kept back from the budget for scoring and the finding once shadows are done.
RESERVE_SECONDS = 1.0
#: Shadow models stop once they have used this share of the check's time budget (one slow fit must
#: not hold the background worker for the whole budget; raise ``time_budget`` for more shadows).
SHADOW_SHARE = 0.5
#: Probabilities (and the sum of the other classes' probabilities) are floored at this before logs, so
#: |φ| ≤ 13.8 for scikit-learn models, about where float32 softmax outputs saturate. On the MLP target of
#: bench/privacy_membership.py a floor of 1e-30 gave the same loss-attack AUC and a lower shadow AUC
#: (0.611 vs 0.629): saturated rows then dominate the pooled OUT variance.
P_FLOOR = 1e-6
#: δ used for the empirical ε lower bound (a typical DP-SGD δ; a bound for δ is valid for any smaller δ).
DELTA = 1e-5
#: Confidence level of every interval (Clopper–Pearson, DeLong).
CONFIDENCE = 0.95
#: Points of the log-scale ROC given in ``roc_fpr`` / ``roc_tpr``.
ROC_POINTS = 200

# Severity. AUC thresholds apply when the AUC interval excludes 0.5; a TPR threshold applies when the
# TPR's Clopper–Pearson lower bound is above its FPR level and the held-out rows resolve that FPR.
#: medium from this AUC on
AUC_MEDIUM = 0.60
#: high from this AUC on
AUC_HIGH = 0.75
#: medium when TPR at 1 % FPR reaches this
TPR_1PCT_MEDIUM = 0.05
#: high when TPR at 0.1 % FPR reaches this
TPR_01PCT_HIGH = 0.05
#: Train-minus-test accuracy gap: low from GAP_LOW, medium from GAP_MEDIUM.
GAP_LOW, GAP_MEDIUM = 0.05, 0.10
#: Tree leaves should hold at least this many training rows (SACRO-ML's default for min_samples_leaf).
MIN_LEAF_SAMPLES = 5
#: k-nearest-neighbour models with fewer neighbours than this are flagged (k = 1 is medium).
MIN_NEIGHBOURS = 5

_STABLE = ("auc", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "advantage", "epsilon_lower_bound")
_ADVICE = ("Reduce memorisation: regularise (weight decay, smaller trees / min_samples_leaf ≥ 5, dropout), "
           "train with early stopping, and use more training data. For a guarantee, train with DP-SGD "
           "(e.g. Opacus) and track ε with mlsec's privacy accounting (mlsec_jupyter.privacy). Do not "
           "release raw probabilities or logits: return labels or rounded top-k scores.")


# ==================================================================================================
# the metrics kernel (pure numpy / scipy)
# ==================================================================================================
def _scores(values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if np.isnan(a).any():
        raise ValueError("membership scores must not be NaN")
    return a


def roc(member_scores: Any, nonmember_scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of calling "member" when ``score >= threshold``: ``(fpr, tpr, thresholds)``.

    Thresholds are the distinct scores in decreasing order, preceded by ``+inf`` (nobody called a
    member: FPR = TPR = 0); the last point is (1, 1).
    """
    m, n = _scores(member_scores), _scores(nonmember_scores)
    if not len(m) or not len(n):
        raise ValueError("need at least one member and one non-member score")
    thresholds = np.unique(np.concatenate([m, n]))[::-1]
    # rows with score >= t, for each t (searchsorted on sorted ascending scores)
    tp = len(m) - np.searchsorted(np.sort(m), thresholds, side="left")
    fp = len(n) - np.searchsorted(np.sort(n), thresholds, side="left")
    fpr = np.concatenate([[0.0], fp / len(n)])
    tpr = np.concatenate([[0.0], tp / len(m)])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def auc(member_scores: Any, nonmember_scores: Any) -> float:
    """Area under the ROC: P(member score > non-member score), ties counting one half."""
    from scipy.stats import rankdata

    m, n = _scores(member_scores), _scores(nonmember_scores)
    ranks = rankdata(np.concatenate([m, n]))
    return float((ranks[: len(m)].sum() - len(m) * (len(m) + 1) / 2.0) / (len(m) * len(n)))


def auc_interval(member_scores: Any, nonmember_scores: Any, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """DeLong (1988) interval for the AUC, clipped to [0, 1]."""
    from scipy.stats import norm, rankdata

    m, n = _scores(member_scores), _scores(nonmember_scores)
    a = auc(m, n)
    if len(m) < 2 or len(n) < 2:
        return 0.0, 1.0
    both = rankdata(np.concatenate([m, n]))
    v10 = (both[: len(m)] - rankdata(m)) / len(n)   # per member: share of non-members below it
    v01 = 1.0 - (both[len(m):] - rankdata(n)) / len(m)  # per non-member: share of members above it
    se = math.sqrt(np.var(v10, ddof=1) / len(m) + np.var(v01, ddof=1) / len(n))
    z = float(norm.ppf(0.5 + confidence / 2.0))
    return max(0.0, a - z * se), min(1.0, a + z * se)


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """The highest TPR of an ROC point whose FPR is at most ``target`` (conservative: no interpolation)."""
    ok = np.asarray(fpr) <= target + 1e-12
    return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


def advantage(member_scores: Any, nonmember_scores: Any, threshold: float | None = None) -> float:
    """Membership advantage TPR − FPR at ``threshold`` (score ≥ threshold = member), or its maximum."""
    m, n = _scores(member_scores), _scores(nonmember_scores)
    if threshold is not None:
        return float(np.mean(m >= threshold) - np.mean(n >= threshold))
    fpr, tpr, _ = roc(m, n)
    return float(np.max(tpr - fpr))


def epsilon_from_rates(fpr: Any, fnr: Any, delta: float = 0.0) -> np.ndarray:
    """``ln((1 − δ − FPR) / FNR)``: the ε any (ε, δ)-DP mechanism needs to allow these error rates.

    Use it with ``(fnr, fpr)`` swapped for the symmetric bound. Rates where the bound is undefined or
    negative give 0 (an FNR of 0 gives +inf).
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = np.asarray(fnr, dtype=np.float64)
    num = 1.0 - delta - fpr
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.where(num > 0, np.log(np.where(num > 0, num, 1.0)) - np.log(fnr), 0.0)
    return np.maximum(eps, 0.0)


def epsilon_lower_bound(member_scores: Any, nonmember_scores: Any, delta: float = DELTA,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Empirical ε lower bound and the threshold that gives it (Jagielski et al. 2020).

    For each threshold, FPR and FNR are replaced by the upper ends of their Clopper–Pearson intervals
    and both DP inequalities are inverted; the largest value over thresholds is returned.
    """
    m, n = _scores(member_scores), _scores(nonmember_scores)
    fpr, tpr, thresholds = roc(m, n)
    fp = np.round(fpr * len(n))
    fn = np.round((1.0 - tpr) * len(m))
    fpr_hi = clopper_pearson(fp, len(n), confidence)[1]
    fnr_hi = clopper_pearson(fn, len(m), confidence)[1]
    eps = np.maximum(epsilon_from_rates(fpr_hi, fnr_hi, delta), epsilon_from_rates(fnr_hi, fpr_hi, delta))
    best = int(np.argmax(eps))
    return float(eps[best]), float(thresholds[best])


def held_out_epsilon_bound(member_scores: Any, nonmember_scores: Any, rng: np.random.Generator,
                           delta: float = DELTA, confidence: float = CONFIDENCE) -> float:
    """A valid ε lower bound for a DP comparison: the threshold (and direction) is chosen on one random
    half of the rows and the Clopper–Pearson bound is evaluated on the other half, so picking the best
    of many thresholds cannot inflate it (Jagielski et al. 2020 choose the threshold on separate data)."""
    m, n = _scores(member_scores), _scores(nonmember_scores)
    pm, pn = rng.permutation(len(m)), rng.permutation(len(n))
    m_fit, m_eval = m[pm[: len(m) // 2]], m[pm[len(m) // 2:]]
    n_fit, n_eval = n[pn[: len(n) // 2]], n[pn[len(n) // 2:]]
    if min(len(m_fit), len(n_fit), len(m_eval), len(n_eval)) == 0:
        return 0.0
    _, threshold = epsilon_lower_bound(m_fit, n_fit, delta, confidence)
    fp, fn = int(np.sum(n_eval >= threshold)), int(np.sum(m_eval < threshold))
    fpr_hi = float(clopper_pearson(fp, len(n_eval), confidence)[1])
    fnr_hi = float(clopper_pearson(fn, len(m_eval), confidence)[1])
    both = np.maximum(epsilon_from_rates(fpr_hi, fnr_hi, delta), epsilon_from_rates(fnr_hi, fpr_hi, delta))
    return float(both)


def dp_max_tpr(fpr: Any, epsilon: float, delta: float = 0.0) -> np.ndarray | float:
    """Largest TPR an attack can reach at ``fpr`` against an (ε, δ)-DP mechanism:
    ``min(e^ε·FPR + δ, 1 − e^{−ε}(1 − δ − FPR))`` clipped to [0, 1] (Kairouz et al. 2015, Thm 2.1)."""
    f = np.asarray(fpr, dtype=np.float64)
    out = np.clip(np.minimum(np.exp(epsilon) * f + delta, 1.0 - np.exp(-epsilon) * (1.0 - delta - f)), 0.0, 1.0)
    return float(out) if out.ndim == 0 else out


def dp_max_advantage(epsilon: float, delta: float = 0.0) -> float:
    """Largest membership advantage TPR − FPR under (ε, δ)-DP: ``(e^ε − 1 + 2δ) / (e^ε + 1)``."""
    if math.isinf(epsilon):
        return 1.0
    return float((math.expm1(epsilon) + 2.0 * delta) / (math.exp(epsilon) + 1.0))


def log_roc(fpr: np.ndarray, tpr: np.ndarray, n_nonmembers: int, points: int = ROC_POINTS) -> tuple[list, list]:
    """At most ``points`` ROC points, log-spaced in FPR from ``1/n_nonmembers`` to 1 (so every FPR is
    positive and the curve can be drawn on a log axis), each with the best TPR at FPR ≤ that value (a
    step curve that never overstates; the first point includes FPR = 0)."""
    lo = 1.0 / max(n_nonmembers, 1)
    grid = np.unique(np.round(np.logspace(np.log10(lo), 0.0, max(points, 2)), 12))
    order = np.argsort(fpr, kind="stable")
    f, t = np.asarray(fpr)[order], np.maximum.accumulate(np.asarray(tpr)[order])
    idx = np.searchsorted(f, grid + 1e-12, side="right") - 1
    best = np.where(idx >= 0, t[np.maximum(idx, 0)], 0.0)
    return [round(float(x), 8) for x in grid], [round(float(y), 6) for y in best]


@dataclass
class AttackResult:
    """Scores and metrics of one attack (higher score = more likely a member)."""

    name: str
    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    @property
    def auc(self) -> float:
        return float(self.metrics["auc"])


def attack_metrics(member_scores: Any, nonmember_scores: Any, delta: float = DELTA,
                   confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Every number the finding reports for one attack (see the module doc)."""
    m, n = _scores(member_scores), _scores(nonmember_scores)
    fpr, tpr, _ = roc(m, n)
    a = auc(m, n)
    lo, hi = auc_interval(m, n, confidence)
    out: dict[str, Any] = {"auc": round(a, 6), "auc_ci": [round(lo, 6), round(hi, 6)]}
    for key, target in (("tpr_at_1pct_fpr", 0.01), ("tpr_at_0_1pct_fpr", 0.001)):
        t = tpr_at_fpr(fpr, tpr, target)
        ci = clopper_pearson(round(t * len(m)), len(m), confidence)
        out[key] = round(t, 6)
        out[key + "_ci"] = [round(float(ci[0]), 6), round(float(ci[1]), 6)]
    out["advantage"] = round(float(np.max(tpr - fpr)), 6)
    eps, _ = epsilon_lower_bound(m, n, delta, confidence)
    out["epsilon_lower_bound"] = round(eps, 6) if np.isfinite(eps) else eps
    roc_fpr, roc_tpr = log_roc(fpr, tpr, len(n))
    out["roc_fpr"], out["roc_tpr"] = roc_fpr, roc_tpr
    out["n_members"], out["n_nonmembers"] = len(m), len(n)
    return out


def compare_with_dp(epsilon_lower_bound: float, accounted_epsilon: float, *, delta: float | None = None,
                    check: str = CHECK) -> Finding:
    """Compare an empirical ε lower bound with the ε a DP accountant reports for the same training.

    A lower bound above the accounted ε is impossible for a correct DP implementation: the finding is
    critical (noise not applied, wrong sampling rate or steps, a bug in clipping or accounting).
    Otherwise an info finding says how much of the accounted ε the audit reached.
    """
    lb, acc = float(epsilon_lower_bound), float(accounted_epsilon)
    metrics: dict[str, Any] = {"epsilon_lower_bound": lb, "accounted_epsilon": acc, "epsilon": acc}
    if delta is not None:
        metrics["delta"] = float(delta)
    refs = ("Jagielski et al. 2020, arXiv 2006.07709",)
    if not (lb > acc):
        share = f"{100 * lb / acc:.0f}% of it" if acc > 0 and np.isfinite(acc) else "below it"
        return Finding(check, Severity.INFO, "Empirical privacy leakage is within the accounted ε",
                       f"The membership audit's ε lower bound {lb:.3g} does not exceed the accounted "
                       f"ε = {acc:.3g} ({share}); the audit finds no contradiction with the DP guarantee.",
                       metrics=metrics, references=refs)
    return Finding(check, Severity.CRITICAL, "Measured leakage exceeds the accounted ε: DP guarantee broken",
                   f"A membership attack proves ε ≥ {lb:.3g} (95% Clopper–Pearson), more than the accounted "
                   f"ε = {acc:.3g}. No correctly implemented (ε, δ)-DP training can leak this much, so the "
                   f"DP implementation or its accounting is wrong.",
                   metrics=metrics,
                   recommendation=("Do not rely on the stated ε. Check that noise is really added to the "
                                   "clipped per-example gradients, that the sampling rate and step count given "
                                   "to the accountant match the training loop (Poisson sampling, every epoch "
                                   "counted), and that no non-private pass (pre-training, evaluation-based "
                                   "early stopping, normalisation statistics) touched the data."),
                   references=refs)


# ==================================================================================================
# reading rows and labels without touching the user's objects
# ==================================================================================================
def _module(obj: Any) -> str:
    return str(getattr(type(obj), "__module__", "") or "")


def _take(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of ``X`` as a new object of a type the model accepts (never a view that is written)."""
    module = _module(X)
    if isinstance(X, np.ndarray):
        return X[idx]
    if module.startswith("pandas"):
        return X.iloc[idx]
    if module.startswith("scipy.sparse"):
        return (X if getattr(X, "format", "") in ("csr", "csc") else X.tocsr())[idx]
    if module.startswith("torch"):
        import torch

        return X.detach()[torch.as_tensor(idx, dtype=torch.long)]
    if type(X) in (list, tuple):
        return [X[int(i)] for i in idx]
    raise TypeError(f"cannot take rows of {type(X).__name__}")


def _label_values(y: Any, idx: np.ndarray) -> np.ndarray:
    rows = _take(y, idx)
    if _module(rows).startswith("torch"):
        rows = rows.cpu().numpy()
    a = np.asarray(rows)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"labels have shape {a.shape}; one class label per row is needed")
    return a


def _class_index(classes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Column of each label in ``classes`` (-1 for labels the model does not know, or missing ones)."""
    out = np.full(len(labels), -1, dtype=np.int64)
    try:
        pos = np.clip(np.searchsorted(classes, labels), 0, len(classes) - 1)
        hit = classes[pos] == labels
        if np.ndim(hit) == 1 and len(classes) and np.all(classes[:-1] <= classes[1:]):
            out[hit] = pos[hit]
            return out
    except (TypeError, ValueError):
        pass
    lookup = {}
    for i, c in enumerate(classes.tolist()):
        lookup.setdefault(c, i)
    for j, v in enumerate(labels.tolist()):
        try:
            out[j] = lookup.get(v, -1)
        except TypeError:  # unhashable
            out[j] = -1
    return out


# ==================================================================================================
# per-row statistics of a model
# ==================================================================================================
@dataclass
class RowStats:
    """Per-row statistics of one model on some rows: ``score`` (higher = more member-like; the loss
    attack's score), ``phi`` (logit-scaled confidence of the true class, for LiRA) and ``correct``."""

    score: np.ndarray
    phi: np.ndarray
    correct: np.ndarray


def _logit_of_true(P: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log p_true, φ = log p_true − log Σ_{other} p) per row (LiRA's stable logit scaling: the sum of the
    other probabilities keeps resolution where ``1 − p`` would round to 0). Both are floored at
    :data:`P_FLOOR`; rows whose label the model does not know get the floor."""
    rows = np.arange(len(col))
    known = col >= 0
    p = np.where(known, P[rows, np.maximum(col, 0)], 0.0)
    other = P.copy()
    other[rows, np.maximum(col, 0)] = 0.0
    rest = np.where(known, other.sum(axis=1), 1.0)
    logp = np.log(np.maximum(p, P_FLOOR))
    return logp, logp - np.log(np.maximum(rest, P_FLOOR))


def sklearn_stats(model: Any, X: Any, labels: np.ndarray, mode: str) -> RowStats:
    """Row statistics of a scikit-learn-like classifier; ``mode`` is ``proba``, ``decision`` or ``predict``."""
    classes = np.asarray(model.classes_) if mode != "predict" else None
    if mode == "proba":
        P = np.asarray(model.predict_proba(X), dtype=np.float64)
        col = _class_index(classes, labels)
        _, phi = _logit_of_true(P, col)
        correct = (np.argmax(P, axis=1) == col) & (col >= 0)
        return RowStats(phi, phi, correct.astype(np.float64))
    if mode == "decision":
        D = np.asarray(model.decision_function(X), dtype=np.float64)
        col = _class_index(classes, labels)
        if D.ndim == 1:  # binary: positive = classes[1]
            sign = np.where(col == 1, 1.0, -1.0)
            margin = np.where(col >= 0, sign * D, -np.abs(D) - 1.0)
        else:
            rows = np.arange(len(col))
            own = D[rows, np.maximum(col, 0)]
            other = D.copy()
            other[rows, np.maximum(col, 0)] = -np.inf
            margin = np.where(col >= 0, own - other.max(axis=1), -np.inf)
            margin = np.where(np.isfinite(margin), margin, np.nanmin(np.where(np.isfinite(margin), margin, 0.0)) - 1.0)
        correct = (margin > 0).astype(np.float64)
        return RowStats(margin, margin, correct)
    pred = np.asarray(model.predict(X))
    correct = np.asarray(pred == labels, dtype=np.float64).reshape(-1)
    return RowStats(correct, correct, correct)


def torch_stats(model: Any, X: Any, labels: np.ndarray, batch: int = 1024) -> RowStats:
    """Cross-entropy statistics of a torch classifier, computed on ``model`` (a private eval-mode copy)."""
    import torch

    params = [p for p in model.parameters()]
    device = params[0].device if params else torch.device("cpu")
    dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    if _module(X).startswith("torch"):
        data = X.detach()
        data = data.to(dtype) if data.is_floating_point() else data
    else:
        arr = np.asarray(X)
        data = torch.as_tensor(arr, dtype=dtype if arr.dtype.kind in "fb" else None)
    y = np.asarray(labels)
    if y.dtype.kind == "f":
        y = np.where(np.isfinite(y), y, -1).astype(np.int64)
    y = y.astype(np.int64)
    logps, phis, correct = [], [], []
    with torch.no_grad():
        for start in range(0, len(y), batch):
            out = model(data[start:start + batch].to(device))
            if isinstance(out, (tuple, list)):
                out = out[0]
            out = out.detach().to("cpu", torch.float64)
            if out.ndim == 1 or out.shape[-1] == 1:  # one logit: binary, sigmoid
                z = out.reshape(-1)
                out = torch.stack([torch.zeros_like(z), z], dim=1)
            out = out.reshape(out.shape[0], -1)
            logp_all = torch.log_softmax(out, dim=1).numpy()
            yy = y[start:start + batch]
            ok = (yy >= 0) & (yy < logp_all.shape[1])
            col = np.where(ok, yy, 0)
            rows = np.arange(len(yy))
            own = np.where(ok, logp_all[rows, col], np.log(P_FLOOR))
            other = logp_all.copy()
            other[rows, col] = -np.inf
            rest = np.logaddexp.reduce(other, axis=1)
            phi = np.clip(own - rest, -100.0, 100.0)
            logps.append(phi)  # the loss attack ranks by φ: the same order as -loss, resolved near p = 1
            phis.append(phi)
            correct.append(((np.argmax(logp_all, axis=1) == col) & ok).astype(np.float64))
    return RowStats(np.concatenate(logps), np.concatenate(phis), np.concatenate(correct))


def _torch_copy(model: Any) -> tuple[Any, str]:
    """A private CPU, eval-mode, hook-free copy of a torch module (:func:`..._models.private_torch_copy`)."""
    from .._models import private_torch_copy

    try:
        return private_torch_copy(model), ""
    except Exception as exc:  # non-copyable buffers, meta tensors...
        return None, f"the module could not be copied ({type(exc).__name__}), so it was not run"


def _is_regressor(model: Any) -> bool:
    if not callable(getattr(type(model), "get_params", None)):
        return False
    try:
        from sklearn.base import is_regressor

        return bool(is_regressor(model))
    except Exception:
        return False


def _sklearn_mode(model: Any) -> str | None:
    tp = type(model)
    if callable(getattr(tp, "predict_proba", None)):
        return "proba"
    if callable(getattr(tp, "decision_function", None)):
        return "decision"
    if callable(getattr(tp, "predict", None)):
        return "predict"
    return None


# ==================================================================================================
# the shadow-model attack (LiRA offline)
# ==================================================================================================
def lira_offline_scores(target_phi: np.ndarray, shadow_phi: np.ndarray, out_mask: np.ndarray,
                        per_example_min: int = PER_EXAMPLE_VARIANCE_MIN) -> tuple[np.ndarray, np.ndarray]:
    """LiRA-offline scores ``(φ − μ_OUT) / σ_OUT`` per row, and which rows have any OUT shadow.

    ``shadow_phi`` is (shadows, rows); ``out_mask[k, i]`` says shadow ``k`` did not train on row ``i``.
    Rows with at least ``per_example_min`` OUT values get their own σ; the rest use the global σ pooled
    over every row's deviations from its own OUT mean.
    """
    n_out = out_mask.sum(axis=0)
    has = n_out > 0
    safe = np.maximum(n_out, 1)
    mean = np.where(out_mask, shadow_phi, 0.0).sum(axis=0) / safe
    dev2 = np.where(out_mask, (shadow_phi - mean[None, :]) ** 2, 0.0).sum(axis=0)
    dof = np.maximum(n_out - 1, 0)
    pooled = float(dev2.sum() / dof.sum()) if dof.sum() > 0 else 0.0
    sigma_global = math.sqrt(pooled) if pooled > 1e-12 else 1.0
    own = np.sqrt(dev2 / np.maximum(dof, 1))
    sigma = np.where(n_out >= per_example_min, np.maximum(own, 1e-3 * sigma_global), sigma_global)
    return (target_phi - mean) / sigma, has


def _concat(a: Any, b: Any) -> Any:
    """Rows of ``a`` then rows of ``b`` (two row subsets of the user's data, same kind)."""
    module = _module(a)
    if isinstance(a, np.ndarray):
        return np.concatenate([a, np.asarray(b)])
    if module.startswith("pandas"):
        import pandas as pd

        return pd.concat([a, b])
    if module.startswith("scipy.sparse"):
        import scipy.sparse as sp

        return sp.vstack([a, b], format="csr")
    if module.startswith("torch"):
        import torch

        return torch.cat([a, b])
    return list(a) + list(b)


def fit_shadow(clone: Any, X_pool: Any, y_pool: Any, pool_rows: np.ndarray, Xm: Any, ym: np.ndarray,
               members: np.ndarray | None, Xn: Any, yn: np.ndarray, mode: str, *,
               budget: Budget | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit one shadow model (an unfitted, seeded clone) on ``pool_rows`` of the pool and the ``members`` rows
    of ``Xm``; return φ of the evaluated members and non-members. One job of the shadow sweep: it may run
    on a cluster (:mod:`.._parallel`), so it takes everything it needs and returns arrays only."""
    X_fit, y_fit = _take(X_pool, pool_rows), _label_values(y_pool, pool_rows)
    if members is not None:
        X_fit, y_fit = _concat(_take(Xm, members), X_fit), np.concatenate([ym[members], y_fit])
    shadow = clone.fit(X_fit, y_fit)
    return sklearn_stats(shadow, Xm, ym, mode).phi, sklearn_stats(shadow, Xn, yn, mode).phi


def _shadow_attack(model: Any, mode: str, X_test: Any, y_test: Any, n_test: int, Xm: Any, ym: np.ndarray,
                   Xn: Any, yn: np.ndarray, non_idx: np.ndarray, target_m: RowStats, target_n: RowStats, n_shadow: int,
                   budget: Budget, rng: np.random.Generator, delta: float,
                   pool_kind: str = "held_out") -> tuple[AttackResult | None, str]:
    """Train up to ``n_shadow`` clones on halves of the pool; return the LiRA-offline result.

    ``pool_kind="held_out"``: the pool is the held-out rows, so no shadow ever saw a member. ``"all"``:
    the evaluated members join the pool (standard LiRA: shadows nearer the target's training size); each
    row, member or not, is then scored only against the shadows that did not train on it.
    """
    start = time.monotonic()
    if n_test > MAX_SHADOW_POOL:
        others = np.setdiff1d(np.arange(n_test), non_idx)
        extra = rng.choice(others, size=MAX_SHADOW_POOL - len(non_idx), replace=False)
        pool = np.sort(np.concatenate([non_idx, extra]))
        budget.note(f"shadow models trained on halves of {MAX_SHADOW_POOL:,} of {n_test:,} held-out rows")
    else:
        pool = np.arange(n_test)
    n_mem = len(ym) if pool_kind == "all" else 0  # members in the pool: local rows 0..n_mem-1 of Xm
    size = n_mem + len(pool)
    # LiRA's balanced assignment: each pool row is IN for exactly half of the shadows
    order = np.argsort(rng.random((n_shadow, size)), axis=0)
    keep = order < n_shadow // 2 if n_shadow > 1 else rng.random((1, size)) < 0.5
    where_eval = n_mem + np.searchsorted(pool, non_idx)  # each evaluated non-member's column in ``keep``
    jobs, shadow_ids = [], []
    for k in range(n_shadow):  # seeds are drawn here, in order, so every backend fits the same shadows
        test_rows = pool[keep[k][n_mem:]]
        mine = np.flatnonzero(keep[k][:n_mem]) if n_mem else None
        y_fit = _label_values(y_test, test_rows) if mine is None else np.concatenate([ym[mine], _label_values(y_test, test_rows)])
        if len(np.unique(y_fit)) < 2:
            continue
        try:
            clone = seeded_clone(model, rng)
        except Exception as exc:  # custom estimators scikit-learn cannot clone
            return None, f"shadow model {k + 1} could not be made ({type(exc).__name__}: {str(exc)[:120]})"
        jobs.append((clone, X_test, y_test, test_rows, Xm, ym, mine, Xn, yn, mode))
        shadow_ids.append(k)
    phis_m, phis_n, outs_m, outs_n = [], [], [], []
    stopped = ""
    per_shadow = 0.0
    results = sweep(fit_shadow, jobs, budget)
    t0 = time.monotonic()
    try:
        for k in shadow_ids:
            if phis_m and budget.remaining < per_shadow + RESERVE_SECONDS:
                stopped = "the time budget would run out"
                break
            if phis_m and time.monotonic() - start + per_shadow > SHADOW_SHARE * budget.seconds:
                stopped = f"shadow models may use {100 * SHADOW_SHARE:.0f}% of the check's time budget"
                break
            try:
                budget.progress(0.9 * len(phis_m) / len(shadow_ids), f"shadow model {len(phis_m) + 1} of {len(shadow_ids)}")
                phi_m, phi_n = next(results)
            except CheckTimeout:
                stopped = "the time budget ran out"
                break
            except (CheckCancelled, BackendError):
                raise
            except Exception as exc:  # a clone that cannot be refitted (custom estimators...)
                return None, f"shadow model {k + 1} could not be trained ({type(exc).__name__}: {str(exc)[:120]})"
            phis_m.append(phi_m)
            phis_n.append(phi_n)
            outs_m.append(~keep[k][:n_mem] if n_mem else np.ones(len(ym), dtype=bool))
            outs_n.append(~keep[k][where_eval])
            per_shadow = max(per_shadow, time.monotonic() - t0)
            t0 = time.monotonic()
    finally:
        results.close()
    done = len(phis_m)
    if done < MIN_SHADOWS:
        why = f" ({stopped})" if stopped else ""
        return None, f"only {done} of {n_shadow} shadow models were trained{why}; the shadow attack needs {MIN_SHADOWS}"
    shadow_phi = np.concatenate([np.array(phis_m), np.array(phis_n)], axis=1)
    out_mask = np.concatenate([np.array(outs_m), np.array(outs_n)], axis=1)
    scores, has = lira_offline_scores(np.concatenate([target_m.phi, target_n.phi]), shadow_phi, out_mask)
    m_scores, n_scores = scores[: len(ym)][has[: len(ym)]], scores[len(ym):][has[len(ym):]]
    if min(len(m_scores), len(n_scores)) < MIN_PER_SIDE:
        return None, "too few rows were left out of any shadow model"
    note = ""
    if stopped:
        note = f"shadow attack used {done} of {n_shadow} shadow models ({stopped})"
        budget.note(note)
    name = "shadow (LiRA offline)" if pool_kind == "all" else "shadow (LiRA offline, held-out pool)"
    result = AttackResult(name, m_scores, n_scores,
                          attack_metrics(m_scores, n_scores, delta), time.monotonic() - start, note)
    result.metrics["shadow_models"] = done
    return result, ""


# ==================================================================================================
# structural checks (scikit-learn)
# ==================================================================================================
def _tree_leaf_counts(model: Any) -> list[np.ndarray]:
    """Training-row counts of the leaves of every fitted tree in ``model`` (empty if none)."""
    def leaves(tree: Any) -> np.ndarray | None:
        t = getattr(tree, "tree_", None)
        if t is None or not hasattr(t, "children_left"):
            return None
        return np.asarray(t.n_node_samples)[np.asarray(t.children_left) == -1]

    own = leaves(model)
    if own is not None:
        return [own]
    ests = getattr(model, "estimators_", None)
    if ests is None:
        return []
    out = []
    for est in np.asarray(ests, dtype=object).ravel():
        found = leaves(est)
        if found is not None:
            out.append(found)
    return out


def structural_findings(model: Any, framework: str, acc_train: float, acc_test: float,
                        n_m: int, n_n: int) -> list[Finding]:
    """Train/test gap (any model), single-row tree leaves and 1-nearest-neighbour models (scikit-learn)."""
    findings: list[Finding] = []
    gap = acc_train - acc_test
    if gap >= GAP_LOW:
        severity = Severity.MEDIUM if gap >= GAP_MEDIUM else Severity.LOW
        findings.append(Finding(
            CHECK, severity, f"Accuracy drops from {100 * acc_train:.1f}% on training rows to "
                             f"{100 * acc_test:.1f}% on held-out rows",
            f"A train/test gap of {100 * gap:.1f} points (on {n_m:,} training and {n_n:,} held-out rows) means the "
            f"model fits its training rows better than new ones, which is what membership attacks exploit.",
            metrics={"train_accuracy": round(acc_train, 6), "test_accuracy": round(acc_test, 6),
                     "accuracy_gap": round(gap, 6)},
            recommendation="Regularise or simplify the model, stop training earlier, or add training data "
                           "until the gap closes."))
    if framework != "sklearn":
        return findings
    counts = _tree_leaf_counts(model)
    if counts:
        all_leaves = np.concatenate(counts)
        smallest = int(all_leaves.min()) if len(all_leaves) else 0
        single = float(np.mean(all_leaves <= 1)) if len(all_leaves) else 0.0
        if len(all_leaves) and smallest < MIN_LEAF_SAMPLES:
            severity = Severity.MEDIUM if smallest <= 1 else Severity.LOW
            what = "one training row" if smallest <= 1 else f"only {smallest} training rows"
            findings.append(Finding(
                CHECK, severity, f"Tree leaves hold as little as {what}",
                f"{len(counts)} tree{'s' if len(counts) != 1 else ''} with {len(all_leaves):,} leaves; "
                f"{100 * single:.1f}% of leaves hold a single training row, and the smallest holds {smallest}. "
                f"A leaf with one row repeats that row's label (and reveals its neighbourhood): the tree "
                f"memorises individual rows.",
                metrics={"min_leaf_samples": smallest, "single_row_leaf_share": round(single, 6),
                         "n_leaves": len(all_leaves), "n_trees": len(counts)},
                recommendation=f"Set min_samples_leaf ≥ {MIN_LEAF_SAMPLES} (or limit max_depth) and refit; "
                               "this usually costs little accuracy and removes per-row leaves."))
    k = _neighbours(model)
    if k is not None and k < MIN_NEIGHBOURS:
        findings.append(Finding(
            CHECK, Severity.MEDIUM if k <= 1 else Severity.LOW,
            f"k-nearest neighbours with k = {k}",
            f"With n_neighbors={k} the model's answer near a training row is that row's own label, so its "
            f"predictions reveal individual training rows (a k-anonymity of {k}).",
            metrics={"n_neighbors": k},
            recommendation=f"Use n_neighbors ≥ {MIN_NEIGHBOURS} (weights='uniform'), or a parametric model, "
                           "for anything released outside the training environment."))
    return findings


def _neighbours(model: Any) -> int | None:
    tp = type(model)
    if not any(c.__name__ in ("KNeighborsClassifier", "KNeighborsRegressor") for c in tp.__mro__):
        return None
    k = getattr(model, "n_neighbors", None)
    return int(k) if isinstance(k, (int, np.integer)) else None


# ==================================================================================================
# the check
# ==================================================================================================
def _skipped(message: str, severity: Severity = Severity.INFO) -> Finding:
    return Finding(CHECK, severity, "Membership inference not checked", message,
                   metrics={k: None for k in _STABLE},
                   recommendation="Pass the fitted classifier with its training rows (X, y) and held-out rows "
                                  "(X_test, y_test), with labels, to audit membership leakage.")


def _severity(metrics: dict[str, Any], n_nonmembers: int) -> Severity:
    a = metrics["auc"]
    lo = metrics["auc_ci"][0]
    t1, t1_lo = metrics["tpr_at_1pct_fpr"], metrics["tpr_at_1pct_fpr_ci"][0]
    t01, t01_lo = metrics["tpr_at_0_1pct_fpr"], metrics["tpr_at_0_1pct_fpr_ci"][0]
    significant = lo > 0.5
    tpr1 = n_nonmembers >= 100 and t1 >= TPR_1PCT_MEDIUM and t1_lo > 0.01
    tpr01 = n_nonmembers >= 1000 and t01 >= TPR_01PCT_HIGH and t01_lo > 0.001
    if (significant and a >= AUC_HIGH) or tpr01:
        return Severity.HIGH
    if (significant and a >= AUC_MEDIUM) or tpr1:
        return Severity.MEDIUM
    return Severity.LOW if significant else Severity.INFO


def _best(results: list[AttackResult]) -> dict[str, Any]:
    """Stable metrics: the strongest attack's value for each (each is achieved by a concrete attack)."""
    out: dict[str, Any] = {}
    for key in _STABLE:
        winner = max(results, key=lambda r: (float(r.metrics[key]), -results.index(r)))
        out[key] = winner.metrics[key]
        if key + "_ci" in winner.metrics:
            out[key + "_ci"] = winner.metrics[key + "_ci"]
    return out


@register_check(CHECK, applies_to="model", title="Membership inference",
                requires=("training_data", "test_data"), cost="slow")
def membership(*, model: Any, X: Any, y: Any = None, X_test: Any, y_test: Any = None,
               framework: str = "other", n_shadow: int = N_SHADOW, attacks: Sequence[str] = ("loss", "shadow"),
               shadow_pool: str = "all", delta: float = DELTA, accounted_epsilon: float | None = None,
               dp_state: Any = None, budget: Budget) -> list[Finding]:
    """Loss-threshold and LiRA-offline shadow-model membership attacks, plus structural checks.

    ``shadow_pool``: ``"all"`` (default) adds the evaluated training rows to the shadows' pool, as in
    the LiRA paper; ``"held_out"`` trains shadows on halves of the held-out rows only (see
    :func:`_shadow_attack`; on bench/privacy_membership.py's MLP "all" gives AUC 0.66, "held_out" 0.63,
    ART's best 0.65). ``accounted_epsilon``: the ε a DP accountant reports for this model's training (at
    ``delta``); the audit's held-out ε lower bound (:func:`held_out_epsilon_bound`) is compared with it
    and a bound above it is a critical finding (:func:`compare_with_dp`). ``dp_state``: the model's DP
    training as the watcher found it (an Opacus accountant's history); its tight ε at ``delta`` is then
    the accounted ε.
    """
    if y is None or y_test is None:
        return [_skipped("Labels for both the training rows (y) and the held-out rows (y_test) are needed; "
                         "membership inference not checked.")]
    unknown = set(attacks) - {"loss", "shadow"}
    if unknown:
        raise ValueError(f"unknown attack(s) {sorted(unknown)}; choose from 'loss' and 'shadow'")
    if shadow_pool not in ("held_out", "all"):
        raise ValueError(f"shadow_pool must be 'held_out' or 'all', got {shadow_pool!r}")
    if accounted_epsilon is not None and not (np.isfinite(float(accounted_epsilon)) and float(accounted_epsilon) >= 0):
        raise ValueError(f"accounted_epsilon must be a finite ε ≥ 0 from a DP accountant, got {accounted_epsilon!r}.")
    if int(n_shadow) < 0:
        raise ValueError(f"n_shadow must be ≥ 0, got {n_shadow!r}")
    n_tr, n_te = n_samples(X), n_samples(X_test)
    if n_tr is None or n_te is None:
        return [_skipped("X or X_test is not a supported data type (numpy, pandas, scipy sparse, torch tensor, "
                         "list of rows); membership inference not checked.")]
    for name, rows, labels in (("X", n_tr, y), ("X_test", n_te, y_test)):
        n_y = n_samples(labels)
        if n_y is not None and n_y != rows:
            return [_skipped(f"{name} has {rows:,} rows but its labels have {n_y:,}; length mismatch, "
                             f"membership inference not checked.", Severity.LOW)]
    n = min(n_tr, n_te, MAX_PER_SIDE, max(budget.max_rows // 2, 1))
    if n < MIN_PER_SIDE:
        return [_skipped(f"Needs ≥{MIN_PER_SIDE} training and held-out rows; got {n_tr:,} and {n_te:,}.")]
    torch_model = framework == "torch" or "torch.nn.modules.module.Module" in {
        f"{c.__module__}.{c.__qualname__}" for c in type(model).__mro__}
    mode = None if torch_model else _sklearn_mode(model)
    if not torch_model and mode is None:
        return [_skipped(f"{type(model).__name__} has no predict_proba, decision_function or predict; "
                         f"membership inference not checked.")]
    if mode is not None and _is_regressor(model):
        return [_skipped(f"{type(model).__name__} is a regressor; membership inference is audited for "
                         f"classifiers only.")]
    if mode in ("proba", "decision") and getattr(model, "classes_", None) is None:
        return [_skipped(f"{type(model).__name__} has no classes_ (not a fitted classifier); membership "
                         f"inference is audited for classifiers only.")]

    rng = budget.rng()
    mem_idx = np.sort(rng.choice(n_tr, size=n, replace=False))
    non_idx = np.sort(rng.choice(n_te, size=n, replace=False))
    if n < max(n_tr, n_te):
        budget.note(f"membership audit on {n:,} of {n_tr:,} training and {n:,} of {n_te:,} held-out rows")
    ym, yn = _label_values(y, mem_idx), _label_values(y_test, non_idx)
    try:
        n_classes = len(set(ym.tolist()) | set(yn.tolist()))
    except TypeError:  # unhashable labels: let the model decide
        n_classes = 2
    if n_classes < 2:
        return [_skipped("y and y_test hold only one class; membership inference needs a classifier of at "
                         "least two classes, not checked.")]
    Xm, Xn = _take(X, mem_idx), _take(X_test, non_idx)
    budget.checkpoint()

    notes: list[str] = []
    start = time.monotonic()
    if torch_model:
        twin, why = _torch_copy(model)
        if twin is None:
            return [_skipped(f"torch model: {why}; membership inference not checked.")]
        target_m, target_n = torch_stats(twin, Xm, ym), torch_stats(twin, Xn, yn)
        statistic = "cross-entropy of the true class, as log p − log(1 − p) (torch, eval-mode copy)"
    else:
        target_m = sklearn_stats(model, Xm, ym, mode)
        budget.checkpoint()
        target_n = sklearn_stats(model, Xn, yn, mode)
        statistic = {"proba": "loss of the true class, as log p − log(1 − p)",
                     "decision": "decision-function margin of the true class",
                     "predict": "correctness of the predicted label (0/1)"}[mode]
        if mode == "predict":
            notes.append("the model only offers predict(), so the loss attack sees right/wrong only and is weak: "
                         "a low score here does not mean the model is private")
    budget.checkpoint()
    results: list[AttackResult] = []
    if "loss" in attacks:
        results.append(AttackResult("loss threshold", target_m.score, target_n.score,
                                    attack_metrics(target_m.score, target_n.score, delta),
                                    time.monotonic() - start))
        results[-1].metrics["statistic"] = statistic
    extra: list[Finding] = []
    if "shadow" in attacks and int(n_shadow) > 0:
        if torch_model:
            extra.append(Finding(CHECK, Severity.INFO, "Shadow-model attack skipped for the torch model",
                                 "Shadow models are trained only for scikit-learn estimators (they are cloned "
                                 "and refitted); torch training loops cannot be re-run from the model object. "
                                 "The loss-threshold attack was run.",
                                 metrics={}))
        elif mode == "predict":
            notes.append("shadow attack skipped: it needs predict_proba or decision_function")
        elif framework != "sklearn" and not callable(getattr(type(model), "get_params", None)):
            notes.append("shadow attack skipped: the model cannot be cloned (no get_params)")
        else:
            budget.checkpoint()
            shadow, why = _shadow_attack(model, mode, X_test, y_test, n_te, Xm, ym, Xn, yn, non_idx, target_m, target_n,
                                         int(n_shadow), budget, rng, delta, shadow_pool)
            if shadow is not None:
                results.append(shadow)
                if shadow.note:
                    notes.append(shadow.note)
            else:
                notes.append(f"shadow attack not reported: {why}")
    if not results:
        return [_skipped("No attack was run (attacks=" + ", ".join(attacks) + ")."), *extra]

    main = _main_finding(results, statistic, notes, budget)
    if accounted_epsilon is None and getattr(dp_state, "history", None):
        from ...privacy.accounting import epsilon_of_history

        accounted_epsilon = float(epsilon_of_history([tuple(h) for h in dp_state.history], delta=delta))
    if accounted_epsilon is not None:
        bound = max(held_out_epsilon_bound(r.member_scores, r.nonmember_scores, rng, delta) for r in results)
        extra.append(compare_with_dp(bound, accounted_epsilon, delta=delta))
    acc_m, acc_n = float(np.mean(target_m.correct)), float(np.mean(target_n.correct))
    fw = "torch" if torch_model else framework if framework != "other" else (
        "sklearn" if callable(getattr(type(model), "get_params", None)) else "other")
    return [main, *structural_findings(model, fw, acc_m, acc_n, len(ym), len(yn)), *extra]


def _main_finding(results: list[AttackResult], statistic: str, notes: list[str], budget: Budget) -> Finding:
    best_auc = max(results, key=lambda r: r.auc)
    metrics: dict[str, Any] = _best(results)
    metrics["attack"] = best_auc.name
    metrics["roc_fpr"], metrics["roc_tpr"] = best_auc.metrics["roc_fpr"], best_auc.metrics["roc_tpr"]
    # drawn by render/plots.py as a small log-x ROC when the renderer supports ``plot``
    metrics["plot"] = {"kind": "line", "x": "roc_fpr", "y": "roc_tpr", "x_label": "false-positive rate",
                       "y_label": "true-positive rate", "log_x": True}
    metrics["n_members"], metrics["n_nonmembers"] = best_auc.metrics["n_members"], best_auc.metrics["n_nonmembers"]
    metrics["attacks"] = {
        r.name: {k: v for k, v in r.metrics.items() if k not in ("roc_fpr", "roc_tpr")} | {"seconds": round(r.seconds, 3)}
        for r in results}
    all_notes = notes + [n for n in budget.notes if n not in notes]
    if all_notes:
        metrics["notes"] = all_notes
    n_non = int(metrics["n_nonmembers"])
    severity = max(_severity(r.metrics, int(r.metrics["n_nonmembers"])) for r in results)
    a, (lo, hi) = metrics["auc"], metrics["auc_ci"]
    t1, t01 = metrics["tpr_at_1pct_fpr"], metrics["tpr_at_0_1pct_fpr"]
    names = " and ".join(r.name for r in results)
    numbers = (f"AUC {a:.3f} (95% CI {lo:.3f}–{hi:.3f}), TPR {100 * t1:.1f}% at 1% FPR and {100 * t01:.1f}% at "
               f"0.1% FPR, advantage {metrics['advantage']:.3f}, empirical ε ≥ {metrics['epsilon_lower_bound']:.2f}")
    rows = f"{metrics['n_members']:,} training rows vs {n_non:,} held-out rows"
    how = f"{names} attack{'s' if len(results) > 1 else ''} ({rows}; loss statistic: {statistic})"
    tail = (" Numbers are the strongest attack's for each metric; the ROC (roc_fpr, roc_tpr: log-spaced FPR) is "
            f"the {best_auc.name} attack's.")
    if n_non < 1000:
        tail += f" With {n_non:,} held-out rows, FPR below {1 / n_non:.2%} cannot be resolved."
    if notes:
        tail += " Note: " + "; ".join(notes) + "."
    if severity <= Severity.LOW:
        title = ("No measurable membership leakage" if severity == Severity.INFO
                 else "Slight membership leakage")
        summary = (f"{how}: {numbers}. An attacker does "
                   f"{'no better than chance' if severity == Severity.INFO else 'barely better than chance'} "
                   f"at telling training rows from held-out rows.{tail}")
        advice = "" if severity == Severity.INFO else _ADVICE
        return Finding(CHECK, severity, title, summary, metrics=metrics, recommendation=advice)
    title = (f"The model reveals which rows it was trained on (AUC {a:.2f})" if severity == Severity.HIGH
             else f"Membership leakage: training rows are distinguishable (AUC {a:.2f})")
    summary = f"{how}: {numbers}.{tail}"
    return Finding(CHECK, severity, title, summary, metrics=metrics, recommendation=_ADVICE)
