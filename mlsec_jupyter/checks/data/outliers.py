"""``data.outliers``: injected or out-of-distribution rows, scored per class when labels exist.

Method (chosen on ``bench/_poison_outliers.py``, see ``bench/RESULTS.md``):

1. Rows with a missing or infinite feature are skipped (the card says how many); columns that could
   not be read or hold a single value are left out. Features are standardised robustly on a copy:
   ``(x - median) / (IQR / 1.349)``, falling back to the standard deviation for columns whose IQR is
   0 (sparse pixels), and clipped to ±:data:`CLIP` so one absurd value cannot swamp the distances.
2. With class labels, every class with at least :data:`MIN_CLASS_ROWS` rows is scored on its own:
   a point labelled ``c`` that lies far from the other rows labelled ``c`` is the poisoning signal
   (an injected point carries some label, and it is rarely typical of that label). Rows of smaller
   classes, rows with a missing label and unlabelled data are scored against all rows ("global").
3. Two detectors score each group: an isolation forest (Liu, Ting & Zhou 2008; scikit-learn
   ``IsolationForest`` with a private ``random_state``) and the local outlier factor (Breunig,
   Kriegel, Ng & Sander 2000; ``LocalOutlierFactor``, 20 neighbours). Each score is turned into a
   robust z-score inside its group (``(s - median) / (1.4826 MAD)``), combined as
   ``z_iforest + LOF_WEIGHT * z_lof`` and robust-z-scored again, so the final score means "how many
   robust standard deviations above the typical row of this group".
4. A row is flagged when its score exceeds :data:`THRESHOLD` — a calibrated score threshold, not a
   fixed contamination share, so clean data yields few flags (false-flag rates on clean scikit-learn
   data sets are measured in ``tests/test_check_outliers.py``).

Rows are put in a canonical order (sorted by value) before fitting, so the result does not depend
on the row order of the user's data. Big data is sampled (at most :data:`MAX_SCORED_ROWS` rows, fewer
for wide data under the budget's cell limit) and the card says so.

References: F. T. Liu, K. M. Ting, Z.-H. Zhou, "Isolation Forest", ICDM 2008;
M. M. Breunig, H.-P. Kriegel, R. T. Ng, J. Sander, "LOF: Identifying Density-Based Local
Outliers", SIGMOD 2000.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._tabular import Labels, Table, UnsupportedData, column_list, plural, prepare_features, labels_for
from ..budget import Budget
from ..registry import register_check

CHECK = "data.outliers"
#: A class is scored on its own from this many rows; smaller classes are scored globally.
MIN_CLASS_ROWS = 30
#: Fewer usable rows than this: the check says it cannot score them.
MIN_ROWS = 10
#: Weight of the LOF robust z-score next to the isolation-forest one (chosen on the benchmark).
LOF_WEIGHT = 0.25
LOF_NEIGHBORS = 20
N_TREES = 100
#: Robustly standardised features are clipped to ±CLIP.
CLIP = 50.0
#: Flag rows whose final robust z-score exceeds this (chosen on the benchmark and clean data sets).
THRESHOLD = 6.0
#: A flagged row is "strong" from this score on.
STRONG = 10.0
#: Severity: high from HIGH_STRONG_SHARE strong outliers (and at least HIGH_MIN of them), medium from
#: MEDIUM_STRONG_SHARE (and MEDIUM_MIN); else low. Clean data sets stay below MEDIUM (see the tests).
HIGH_STRONG_SHARE, HIGH_MIN = 0.01, 10
MEDIUM_STRONG_SHARE, MEDIUM_MIN = 0.004, 5
#: Fewer than MEDIUM_MIN strong outliers and under this share of rows is info: real data has a few.
INFO_SHARE = 0.03
#: At most this many rows are scored (LOF is quadratic in the group size at worst).
MAX_SCORED_ROWS = 50_000
TOP_ROWS = 10


@register_check(CHECK, applies_to="dataset", title="Outliers and injected points", cost="slow")
def outliers(*, X: Any, y: Any = None, feature_names: Any = None, budget: Budget) -> list[Finding]:
    """Rows that lie far from the other rows of their class (or of the data): injected-looking points."""
    capped = dataclasses.replace(budget, max_rows=min(budget.max_rows, MAX_SCORED_ROWS))  # shares notes/cancel
    try:
        table = prepare_features(X, capped, feature_names, y=y)
    except UnsupportedData as exc:
        return [_not_checked(exc.message, exc.severity)]
    budget.checkpoint()
    notes = list(table.notes)
    labels = _read_labels(y, table, budget, notes)

    values = table.values if table.readable.all() else table.values[:, table.readable]
    finite = np.isfinite(values).all(axis=1) if values.shape[1] else np.zeros(len(values), dtype=bool)
    skipped = int(np.count_nonzero(~finite))
    if skipped:
        notes.append(f"{plural(skipped, 'row')} with missing or infinite values skipped")
    local = np.flatnonzero(finite)
    if local.size < MIN_ROWS:
        return [_not_checked(f"Only {plural(int(local.size), 'usable row')} (without missing values); at least "
                             f"{MIN_ROWS} are needed to tell outliers apart.", "info", notes)]
    Z = robust_standardise(values if skipped == 0 else values[local])
    del values
    if Z.shape[1] == 0:
        return [_not_checked("Every usable column holds a single value; there is nothing to score.", "info", notes)]
    codes = labels.codes[local] if labels is not None else np.full(local.size, -1, dtype=np.int64)
    budget.checkpoint()
    scores, groups, fallback = score_rows(Z, codes, budget)
    if fallback:
        notes.append(fallback)
    notes += budget.notes
    return [_finding(table, labels, local, scores, groups, notes, skipped)]


# -- scoring (pure kernels) -------------------------------------------------------------------------
def robust_standardise(values: np.ndarray) -> np.ndarray:
    """``(x - median) / (IQR / 1.349)`` per column on a copy (std where the IQR is 0), constant
    columns dropped, clipped to ±:data:`CLIP`. The copy is the only full-size array kept (issue 9)."""
    q1, med, q3 = np.percentile(values, [25, 50, 75], axis=0)
    scale = (q3 - q1) / 1.349
    no_iqr = np.flatnonzero(~(scale > 0))
    if no_iqr.size:
        scale[no_iqr] = values[:, no_iqr].std(axis=0)
    keep = scale > 0
    Z = np.array(values[:, keep] if not keep.all() else values, dtype=np.float64)
    Z -= med[keep]
    Z /= scale[keep]
    return np.clip(Z, -CLIP, CLIP, out=Z)


def robust_z(s: np.ndarray) -> np.ndarray:
    """``(s - median) / (1.4826 MAD)`` (the standard deviation, or 1, when the MAD is 0)."""
    med = np.median(s)
    mad = 1.4826 * np.median(np.abs(s - med))
    if not mad > 0:
        mad = float(s.std()) or 1.0
    return (s - med) / mad


def _canonical_order(Z: np.ndarray) -> np.ndarray:
    """Row order sorted by value, so a fit does not depend on how the user ordered the rows."""
    return np.lexsort(Z.T[::-1])


def group_scores(Z: np.ndarray, seed: int) -> np.ndarray:
    """Combined robust z-score of every row of one group (isolation forest + LOF)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    order = _canonical_order(Z)
    Zs = np.ascontiguousarray(Z[order])
    forest = IsolationForest(n_estimators=N_TREES, random_state=seed).fit(Zs)
    z_if = robust_z(-forest.score_samples(Zs))
    # LOF may warn "Duplicate values are leading to incorrect results"; ties are fine here. The runner
    # silences warnings raised inside checks per thread (warnings.catch_warnings is not thread-safe).
    lof = LocalOutlierFactor(n_neighbors=min(LOF_NEIGHBORS, len(Zs) - 1)).fit(Zs)
    z_lof = robust_z(-lof.negative_outlier_factor_)
    out = np.empty(len(Z))
    out[order] = robust_z(z_if + LOF_WEIGHT * z_lof)
    return out


def score_rows(Z: np.ndarray, codes: np.ndarray, budget: Budget) -> tuple[np.ndarray, np.ndarray, str]:
    """Scores, the group of every row (class code, or -1 = scored globally) and a fallback note."""
    scores = np.full(len(Z), np.nan)
    groups = np.full(len(Z), -1, dtype=np.int64)
    seed = int(budget.seed)
    present, counts = np.unique(codes[codes >= 0], return_counts=True)
    own = present[counts >= MIN_CLASS_ROWS]
    for c in own:
        budget.checkpoint()
        rows = np.flatnonzero(codes == c)
        scores[rows] = group_scores(Z[rows], seed)
        groups[rows] = c
    rest = np.flatnonzero(groups < 0)
    note = ""
    if rest.size:
        budget.checkpoint()
        scores[rest] = group_scores(Z, seed)[rest]  # global: scored against all rows
        small = present[counts < MIN_CLASS_ROWS]
        if own.size and small.size:
            note = (f"{plural(int(small.size), 'class', 'classes')} with fewer than {MIN_CLASS_ROWS} rows "
                    f"scored against all rows instead of per class")
    return scores, groups, note


# -- findings -------------------------------------------------------------------------------------------
def _read_labels(y: Any, table: Table, budget: Budget, notes: list[str]) -> Labels | None:
    if y is None:
        notes.append("no labels given: rows scored against the whole data set")
        return None
    try:
        labels = labels_for(y, table, budget)
    except UnsupportedData as exc:
        notes.append(f"labels not used ({exc.message}): rows scored against the whole data set")
        return None
    if labels.target_type not in ("binary", "multiclass"):
        notes.append(f"y is {labels.target_type}, not class labels: rows scored against the whole data set")
        return None
    return labels


def _finding(table: Table, labels: Labels | None, local: np.ndarray, scores: np.ndarray, groups: np.ndarray,
             notes: list[str], skipped: int) -> Finding:
    n = len(scores)
    flagged = np.flatnonzero(scores > THRESHOLD)
    flagged = flagged[np.argsort(-scores[flagged], kind="stable")]
    rows = table.positions(local[flagged])
    strong = int(np.count_nonzero(scores[flagged] >= STRONG))
    rate = len(flagged) / n
    per_class: dict[str, int] = {}
    if labels is not None:
        for code in labels.codes[local[flagged]]:
            name = labels.classes[code] if code >= 0 else "(missing label)"
            per_class[name] = per_class.get(name, 0) + 1
    method = ("per-class" if labels is not None and (groups >= 0).any() else "global") + \
        f" isolation forest + {LOF_WEIGHT:g}·LOF (robust z)"
    metrics: dict[str, Any] = {
        "outlier_rate": rate, "n_outliers": len(flagged), "n_strong": strong, "n_scored": n,
        "rows_skipped_nan": skipped, "per_class": per_class, "method": method, "threshold": THRESHOLD,
        "top_rows": [{"row": int(r), "label": _label_of(labels, local[i]), "score": round(float(scores[i]), 2)}
                     for r, i in zip(rows[:TOP_ROWS], flagged[:TOP_ROWS])],
    }
    if table.sampled:
        metrics.update(sampled_rows=table.n_rows, total_rows=table.n_rows_total)
    if notes:
        metrics["notes"] = list(dict.fromkeys(notes))
    note_text = (" Note: " + "; ".join(dict.fromkeys(notes)) + ".") if notes else ""
    where = f" of {n:,} scored rows" + (f" (a sample of {table.n_rows_total:,})" if n < table.n_rows_total else "")
    if not len(flagged):
        return Finding(CHECK, Severity.INFO, "No outlying rows found",
                       f"No row scored above {THRESHOLD:g} robust standard deviations{where} ({method})."
                       + note_text, metrics=metrics)
    if strong >= max(HIGH_MIN, HIGH_STRONG_SHARE * n):
        severity = Severity.HIGH
    elif strong >= max(MEDIUM_MIN, MEDIUM_STRONG_SHARE * n):
        severity = Severity.MEDIUM
    elif strong >= MEDIUM_MIN or rate >= INFO_SHARE:
        severity = Severity.LOW
    else:
        severity = Severity.INFO  # a few mild outliers, as clean data has
    word = "injected-looking point" if severity >= Severity.MEDIUM else "outlying row"
    title = f"{plural(len(flagged), word)} ({100 * rate:.1f}%)"
    summary = (f"{plural(len(flagged), 'row')}{where} lie far from the other rows "
               f"{'of their class' if labels is not None else 'of the data'} "
               f"(score above {THRESHOLD:g}; {strong:,} strong, above {STRONG:g})")
    if per_class:
        names = sorted(per_class, key=lambda c: -per_class[c])
        summary += f"; labelled as {column_list(names, counts=[per_class[c] for c in names])}"
    summary += f". Most outlying rows: {', '.join(str(int(r)) for r in rows[:5])}. Method: {method}." + note_text
    advice = ("Inspect these rows (X[rows], most outlying first) and check where they came from. If they are "
              "not legitimate — injected, corrupted or from another source — drop them before training; if they "
              "are real but rare, keep them and consider a robust model.")
    return Finding(CHECK, severity, title, summary, metrics=metrics, indices=rows, recommendation=advice)


def _label_of(labels: Labels | None, i: int) -> str | None:
    if labels is None:
        return None
    code = int(labels.codes[i])
    return labels.classes[code] if code >= 0 else None


def _not_checked(message: str, severity: str, notes: list[str] | None = None) -> Finding:
    text = message + ((" Note: " + "; ".join(notes) + ".") if notes else "")
    return Finding(CHECK, Severity.parse(severity), "Outliers not checked", text,
                   metrics={"outlier_rate": None},
                   recommendation="Pass the features as a 2-D numeric array or DataFrame with at least "
                                  f"{MIN_ROWS} complete rows to run this check.")
