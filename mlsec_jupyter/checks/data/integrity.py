"""``data.integrity``: missing and infinite values, constant columns, dtype and label problems.

Measures what is in the data (reliability B1–B14); it never changes it. Each problem is its own
finding; clean data gives one ``info`` finding. Every finding carries the stable metrics of
DESIGN.md (``n_rows``, ``n_features``, ``nan_count``, ``inf_count``, ``constant_columns``,
``class_counts``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._tabular import (Labels, Table, UnsupportedData, column_list, full_label_codes, n_samples, plural,
                        prepare_features, labels_for)
from ..budget import Budget
from ..registry import register_check

CHECK = "data.integrity"
#: Minority/majority class ratio below which imbalance is reported as low / medium / high.
IMBALANCE_LOW, IMBALANCE_MEDIUM, IMBALANCE_HIGH = 0.2, 0.05, 0.005
#: Share of rows with NaN above which missing values are medium rather than low.
NAN_MEDIUM_ROW_SHARE = 0.1

_DTYPE_ADVICE: dict[str, tuple[Severity, str, str]] = {
    "mixed_types": (Severity.MEDIUM, "Mixed value types in a column",
                    "Clean these columns at load time: parse numbers with pd.to_numeric(col, errors='coerce') "
                    "and inspect the rows that become NaN. Mixed columns usually come from a bad merge, a stray "
                    "header row or rows added from another source."),
    "numbers_as_text": (Severity.LOW, "Numbers stored as text",
                        "Convert these columns with pd.to_numeric(col, errors='coerce') (or astype(float)) so "
                        "models see numbers, not unordered categories."),
    "float16": (Severity.LOW, "Low-precision float16 data",
                "Store features as float32 or float64: float16 keeps about 3 significant digits, which "
                "merges distinct values and hides small perturbations."),
    "beyond_float32": (Severity.MEDIUM, "Values beyond float32 range",
                       "Rescale or clip these columns (np.log1p, StandardScaler, np.clip); many estimators "
                       "(scikit-learn trees, float32 torch models) cast to float32, where these values "
                       "become inf."),
    "int_precision": (Severity.LOW, "Integers beyond float64 precision",
                      "Keep identifiers out of the features or store them as strings: float64 rounds "
                      "integers beyond 2**53, so distinct values can compare equal."),
    "unreadable_objects": (Severity.LOW, "Values that cannot be checked",
                           "Convert these columns to numbers or strings, or drop them; they were left out "
                           "of the data checks."),
}


@register_check(CHECK, applies_to="dataset", title="Data integrity", cost="fast")
def integrity(*, X: Any, y: Any = None, feature_names: Any = None, budget: Budget) -> list[Finding]:
    """NaN/inf counts, constant columns, dtype problems, label/row mismatch, class balance."""
    try:
        table = prepare_features(X, budget, feature_names, y=y)
    except UnsupportedData as exc:
        return [_skipped(exc, X)]
    budget.checkpoint()
    labels, drafts = _read_labels(y, table, budget)
    counts = _class_counts(y, labels, table)
    base = _base_metrics(table, labels, counts)
    drafts = [*_missing_values(table), *_infinite_values(table), *_constant_columns(table),
              *_dtype_problems(table), *drafts]
    if labels is not None:
        drafts += _label_problems(labels, table, counts)
    budget.checkpoint()
    if not drafts:
        return [Finding(CHECK, Severity.INFO, "No integrity problems found", _clean_summary(table, labels, counts),
                        metrics=base)]
    suffix = _sample_suffix(table)
    return [Finding(CHECK, sev, title, summary + suffix, metrics={**base, **extra}, indices=indices,
                    recommendation=advice)
            for sev, title, summary, advice, extra, indices in drafts]


# -- metrics ---------------------------------------------------------------------------------------
def _class_counts(y: Any, labels: Labels | None, table: Table) -> dict[str, int]:
    """Rows per class: over *every* label when X was sampled and the labels are cheap to read in full
    (a sample keeps every class, so its classes are all the classes, in the same order; B15), else in
    the rows read."""
    if labels is None:
        return {}
    if table.sampled and labels.classes:
        codes = full_label_codes(y, table.n_rows_total)
        if codes is not None:
            total = np.bincount(codes[codes >= 0])
            if len(total) == labels.n_classes:
                return {c: int(n) for c, n in zip(labels.classes, total)}
    return labels.counts()


def _base_metrics(table: Table, labels: Labels | None, counts: dict[str, int]) -> dict[str, Any]:
    readable = table.readable
    constant = _constant_mask(table)
    metrics: dict[str, Any] = {
        "n_rows": table.n_rows_total,
        "n_features": table.n_features,
        "nan_count": int(table.missing_mask().sum(axis=0)[readable].sum()),
        "inf_count": int(np.isinf(table.values).sum(axis=0)[readable].sum()),
        "constant_columns": [c for c, k in zip(table.columns, constant) if k],
        "class_counts": counts,
    }
    if table.sampled:
        metrics.update(sampled_rows=table.n_rows, total_rows=table.n_rows_total)
    if labels is not None:
        metrics["target_type"] = labels.target_type
    if table.notes:
        metrics["notes"] = list(table.notes)
    return metrics


def _sample_suffix(table: Table) -> str:
    if not table.sampled:
        return ""
    return f" (in a random sample of {table.n_rows:,} of {table.n_rows_total:,} rows)"


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


# -- feature problems ------------------------------------------------------------------------------
Draft = tuple[Severity, str, str, str, dict[str, Any], Any]


def _cell_problem(table: Table, mask: np.ndarray) -> tuple[list[str], list[int], np.ndarray]:
    """Columns (most affected first), their counts, and the original rows where ``mask`` is set."""
    mask = mask & table.readable[None, :]
    per_col = mask.sum(axis=0)
    order = [j for j in np.argsort(-per_col, kind="stable") if per_col[j] > 0]
    rows = table.positions(np.flatnonzero(mask.any(axis=1)))
    return [table.columns[j] for j in order], [int(per_col[j]) for j in order], rows


def _missing_values(table: Table) -> list[Draft]:
    cols, counts, rows = _cell_problem(table, table.missing_mask())
    if not cols:
        return []
    total = sum(counts)
    empty = [c for c, n in zip(cols, counts) if n == table.n_rows]
    summary = (f"{plural(total, 'missing value')} (NaN) in {len(cols)} of {plural(table.n_features, 'column')}, "
               f"in {len(rows):,} of {plural(table.n_rows, 'row')} ({_share(len(rows), table.n_rows)}): "
               f"{column_list(cols, counts=counts)}.")
    if empty:
        summary += f" Entirely missing: {column_list(empty)}."
    heavy = len(rows) > NAN_MEDIUM_ROW_SHARE * table.n_rows or bool(empty)
    advice = ("Impute inside the model pipeline (sklearn.impute.SimpleImputer(strategy='median'), or an "
              "estimator that accepts NaN such as HistGradientBoostingClassifier), or drop the rows "
              "(df.dropna() / X[~np.isnan(X).any(axis=1)]) and fully empty columns; do it the same way for "
              "train and test.")
    extra = {"nan_by_column": dict(zip(cols, counts)), "rows_with_nan": len(rows)}
    return [(Severity.MEDIUM if heavy else Severity.LOW, "Missing values", summary, advice, extra, rows)]


def _infinite_values(table: Table) -> list[Draft]:
    cols, counts, rows = _cell_problem(table, np.isinf(table.values))
    if not cols:
        return []
    summary = (f"{plural(sum(counts), 'infinite value')} (±inf) in {len(cols)} of "
               f"{plural(table.n_features, 'column')}, in {plural(len(rows), 'row')}: "
               f"{column_list(cols, counts=counts)}.")
    advice = ("Find where they come from (division by zero, log(0), overflow) and replace them on a copy: "
              "treat them as missing (X[np.isinf(X)] = np.nan, then impute) or clip to a finite range. "
              "scikit-learn estimators raise 'Input X contains infinity'.")
    extra = {"inf_by_column": dict(zip(cols, counts)), "rows_with_inf": len(rows)}
    return [(Severity.MEDIUM, "Infinite values", summary, advice, extra, rows)]


def _constant_mask(table: Table) -> np.ndarray:
    """Columns with exactly one distinct non-missing value (never with fewer than 2 rows)."""
    if table.n_rows < 2:
        return np.zeros(table.n_features, dtype=bool)
    lo = np.fmin.reduce(table.values, axis=0)  # fmin/fmax skip NaN without warnings
    hi = np.fmax.reduce(table.values, axis=0)
    return (lo == hi) & table.readable


def _constant_columns(table: Table) -> list[Draft]:
    constant = [c for c, k in zip(table.columns, _constant_mask(table)) if k]
    if not constant:
        return []
    where = " in the sampled rows" if table.sampled else ""
    summary = (f"{len(constant)} of {plural(table.n_features, 'column')} "
               f"{'holds' if len(constant) == 1 else 'hold'} a single value{where}: "
               f"{column_list(constant)}. They carry no information; a constant column often means a "
               f"broken join, a placeholder value or a filter applied upstream.")
    advice = ("Check how these columns were produced; if they are really constant, drop them "
              "(sklearn.feature_selection.VarianceThreshold(0.0) in the pipeline).")
    sev = Severity.MEDIUM if len(constant) == table.n_features else Severity.LOW
    return [(sev, "Constant columns", summary, advice, {}, ())]


def _dtype_problems(table: Table) -> list[Draft]:
    drafts = []
    for kind, (sev, title, advice) in _DTYPE_ADVICE.items():
        found = [i for i in table.issues if i.kind == kind]
        if not found:
            continue
        shown = "; ".join(i.message for i in found[:5])
        more = f"; and {len(found) - 5} more columns" if len(found) > 5 else ""
        summary = f"{plural(len(found), 'column')}: {shown}{more}."
        extra = {"columns": [i.column for i in found], "values_affected": sum(i.count for i in found)}
        drafts.append((sev, title, summary, advice, extra, ()))
    return drafts


# -- labels ----------------------------------------------------------------------------------------
def _read_labels(y: Any, table: Table, budget: Budget) -> tuple[Labels | None, list[Draft]]:
    if y is None:
        return None, []
    n_y = n_samples(y)
    if n_y is not None and n_y != table.n_rows_total and table.source_windows is None:  # Dask frames: estimated
        summary = f"X has {table.n_rows_total:,} rows but y has {n_y:,} labels."
        advice = ("Check that X and y come from the same rows: the same filtering, shuffling and split "
                  "(train_test_split(X, y) keeps them aligned). Label checks were skipped.")
        return None, [(Severity.HIGH, "Label/row length mismatch", summary, advice,
                       {"n_labels": n_y}, ())]
    try:
        return labels_for(y, table, budget), []
    except UnsupportedData as exc:
        advice = "Pass y as one label per row (a 1-D array, Series or list) to check it."
        return None, [(Severity.parse(exc.severity), "Labels not checked", exc.message, advice, {}, ())]


def _label_problems(labels: Labels, table: Table, counts: dict[str, int]) -> list[Draft]:
    drafts = []
    if labels.n_missing:
        rows = table.positions(np.flatnonzero(labels.codes < 0))
        summary = (f"{labels.n_missing:,} of {plural(len(labels.codes), 'label')} "
                   f"{'is' if labels.n_missing == 1 else 'are'} missing (None/NaN/NA)"
                   f"{'; no valid label at all' if labels.target_type == 'unknown' else ''}.")
        advice = ("Check the label column: drop unlabeled rows before fitting (mask = pd.notna(y)), or label "
                  "them; never fill labels with a default class.")
        drafts.append((Severity.MEDIUM, "Missing labels", summary, advice,
                       {"missing_labels": labels.n_missing}, rows))
    if labels.classes and labels.n_classes == 1:
        count = counts[labels.classes[0]]
        summary = (f"y holds only one class ('{labels.classes[0]}', {plural(count, 'row')}) — label-flip and "
                   f"membership checks will be skipped.")
        advice = ("Check the label column and the split: a filter or an unstratified split may have removed "
                  "the other classes (use train_test_split(..., stratify=y)).")
        drafts.append((Severity.MEDIUM, "Single class", summary, advice, {}, ()))
    elif labels.n_classes >= 2:
        drafts += _imbalance(labels, counts)
    return drafts


def _imbalance(labels: Labels, counts: dict[str, int]) -> list[Draft]:
    low_cls = min(counts, key=counts.__getitem__)
    high_cls = max(counts, key=counts.__getitem__)
    ratio = counts[low_cls] / counts[high_cls]
    tiny = [c for c, n in counts.items() if n < 2]
    if ratio >= IMBALANCE_LOW and not tiny:
        return []
    sev = (Severity.HIGH if ratio < IMBALANCE_HIGH else Severity.MEDIUM if ratio < IMBALANCE_MEDIUM
           else Severity.LOW)
    summary = (f"Minority class '{low_cls}' has {plural(counts[low_cls], 'row')}, majority class "
               f"'{high_cls}' has {counts[high_cls]:,} (ratio {ratio:.3g}; {labels.n_classes} classes).")
    if ratio >= IMBALANCE_LOW:
        summary = f"{labels.n_classes} classes, balanced (minority/majority ratio {ratio:.3g})."
    if tiny:
        summary += (f" {'Class' if len(tiny) == 1 else 'Classes'} with a single row: {column_list(tiny)}; "
                    f"stratified splits and per-class cross-validation need at least 2.")
    advice = ("Stratify splits (train_test_split(..., stratify=y)), weight or resample classes "
              "(class_weight='balanced'), and report per-class metrics such as balanced accuracy. A few "
              "poisoned or mislabeled rows weigh much more in a small class.")
    title = "Class imbalance" if ratio < IMBALANCE_LOW else "Classes with a single row"
    return [(sev, title, summary, advice, {"imbalance_ratio": ratio}, ())]


# -- whole-check outcomes --------------------------------------------------------------------------
def _clean_summary(table: Table, labels: Labels | None, counts: dict[str, int]) -> str:
    text = (f"{plural(table.n_rows_total, 'row')} × {plural(table.n_features, 'column')} checked: no missing or infinite "
            f"values, no constant columns, no dtype problems")
    if labels is None:
        text += "; no labels given"
    elif labels.target_type == "continuous":
        text += "; y looks continuous (a regression target), so class balance was not checked"
    elif labels.classes:
        text += f"; {labels.n_classes} classes ({column_list(labels.classes, counts=list(counts.values()))})"
    text += _sample_suffix(table) + "."
    if table.notes:
        text += " Note: " + "; ".join(table.notes) + "."
    return text


def _skipped(exc: UnsupportedData, X: Any) -> Finding:
    metrics = {"n_rows": n_samples(X), "n_features": None, "nan_count": None, "inf_count": None,
               "constant_columns": [], "class_counts": {}}
    return Finding(CHECK, Severity.parse(exc.severity), "Data integrity not checked", exc.message,
                   metrics=metrics,
                   recommendation="Pass the features as a 2-D numpy array, pandas DataFrame, scipy sparse "
                                  "matrix or torch tensor to run this check.")
