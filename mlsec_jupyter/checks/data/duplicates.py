"""``data.duplicates``: exact duplicate rows, duplicates with conflicting labels, train/test overlap.

Rows are compared exactly: values are put in a canonical bit pattern (``-0.0`` -> ``0.0``, every NaN
-> one NaN), hashed per row with a vectorised 64-bit hash, and rows that share a hash are then
compared bit for bit, so a hash collision can never report a false duplicate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._tabular import (Labels, Table, UnsupportedData, align_codes, n_samples, plural, prepare_features,
                        prepare_labels)
from ..budget import Budget
from ..registry import register_check

CHECK = "data.duplicates"
#: Exact duplicates are medium (not low) from this share of rows.
DUPLICATE_MEDIUM_SHARE = 0.10
#: Conflicting-label duplicates and train/test overlap are high from this share of rows.
HIGH_SHARE = 0.01
POISONING_REFS = ("OWASP ML02:2023 Data Poisoning Attack", "MITRE ATLAS AML.T0020 Poison Training Data")

_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


# -- exact row comparison (pure kernels) ------------------------------------------------------------
def canonical_bits(values: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """uint64 (rows, features) bits in which equal rows are equal (-0.0 == 0.0, NaN == NaN).

    ``inplace=True`` reuses ``values`` (a C-contiguous float64 array the caller owns) instead of
    copying it.
    """
    if inplace and values.dtype == np.float64 and values.flags.c_contiguous and values.flags.writeable:
        v = values
        v += 0.0  # -0.0 + 0.0 is +0.0
    else:
        v = np.array(values, dtype=np.float64, order="C") + 0.0
    v[np.isnan(v)] = np.nan
    return v.view(np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def row_hashes(bits: np.ndarray, block: int = 16_384) -> np.ndarray:
    """A 64-bit hash of every row of a uint64 (rows, features) array (order of columns matters).

    Rows are hashed in blocks, so the extra memory is one transposed block, not a copy of the data.
    """
    n_rows, n_cols = bits.shape
    salts = [np.uint64(((j + 1) * _GOLDEN) & _MASK) for j in range(n_cols)]
    out = np.empty(n_rows, dtype=np.uint64)
    for start in range(0, n_rows, block):
        columns = np.ascontiguousarray(bits[start:start + block].T)
        h = np.full(columns.shape[1], _GOLDEN, dtype=np.uint64)
        for j in range(n_cols):
            h ^= _mix(columns[j] + salts[j])
            _mix(h)
        out[start:start + block] = h
    return out


def duplicate_groups(bits: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Group id of every row whose exact content occurs more than once, ``-1`` for unique rows."""
    n = len(hashes)
    groups = np.full(n, -1, dtype=np.int64)
    order = np.argsort(hashes, kind="stable")
    same = hashes[order][1:] == hashes[order][:-1]
    shared = np.zeros(n, dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    candidates = np.sort(order[shared])
    if candidates.size == 0:
        return groups
    _, inverse, counts = np.unique(bits[candidates], axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    repeated = counts[inverse] > 1
    groups[candidates[repeated]] = inverse[repeated]
    return groups


def rows_matching(bits: np.ndarray, hashes: np.ndarray, ref_bits: np.ndarray,
                  ref_hashes: np.ndarray) -> np.ndarray:
    """Local indices of rows of ``bits`` identical to at least one row of ``ref_bits``."""
    cand = np.flatnonzero(np.isin(hashes, ref_hashes))
    if cand.size == 0:
        return cand
    ref_cand = np.flatnonzero(np.isin(ref_hashes, hashes[cand]))
    _, inverse = np.unique(np.concatenate([ref_bits[ref_cand], bits[cand]]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return cand[np.isin(inverse[len(ref_cand):], inverse[: len(ref_cand)])]


# -- the check --------------------------------------------------------------------------------------
@register_check(CHECK, applies_to="dataset", title="Duplicates and leakage", cost="fast")
def duplicates(*, X: Any, y: Any = None, X_test: Any = None, y_test: Any = None,
               feature_names: Any = None, budget: Budget) -> list[Finding]:
    """Exact duplicate rows, identical rows with different labels, test rows identical to training rows.

    ``y_test`` is accepted so the check runs on a whole dataset artifact; it is not used.
    """
    try:
        table = prepare_features(X, budget, feature_names)
    except UnsupportedData as exc:
        return [_skipped("Duplicates not checked", exc.message, exc.severity)]
    notes = list(table.notes)
    train_ok = _comparable(table, notes)
    test, test_problem = _read_test(X_test, table, budget)
    train_values, test_values = _aligned(table, test)
    bits = canonical_bits(train_values, inplace=True)  # our own copy of the data
    hashes = row_hashes(bits)
    budget.checkpoint()
    groups = np.full(table.n_rows, -1, dtype=np.int64)
    groups[train_ok] = duplicate_groups(bits[train_ok], hashes[train_ok])
    labels, label_note = _read_labels(y, table, budget)
    if label_note:
        notes.append(label_note)
    budget.checkpoint()

    drafts, metrics = [], {"n_rows": table.n_rows_total}
    later, n_groups = _later_duplicates(groups)
    metrics.update(exact_duplicates=len(later), duplicate_groups=n_groups)
    if len(later):
        drafts.append(_exact_draft(table, later, n_groups))
    conflict_rows, n_conflict_groups = _conflicts(groups, labels)
    metrics.update(conflicting_label_duplicates=None if labels is None else len(conflict_rows),
                   conflicting_groups=None if labels is None else n_conflict_groups)
    if len(conflict_rows):
        drafts.append(_conflict_draft(table, conflict_rows, n_conflict_groups))
    metrics["train_test_overlap"] = None
    if test is not None and test_values is not None:
        overlap = _overlap(test, test_values, bits[train_ok], hashes[train_ok], notes)
        metrics.update(train_test_overlap=len(overlap), n_test_rows=test.n_rows_total)
        if len(overlap):
            drafts.append(_overlap_draft(table, test, overlap))
    if table.sampled:
        metrics.update(sampled_rows=table.n_rows, total_rows=table.n_rows_total)
    if notes:
        metrics["notes"] = notes
    findings = [Finding(CHECK, sev, title, summary + _sample_suffix(table, test), metrics=metrics,
                        indices=idx, recommendation=advice, references=refs)
                for sev, title, summary, advice, idx, refs in drafts]
    if test_problem:
        findings.append(Finding(CHECK, Severity.INFO, "Train/test overlap not checked", test_problem,
                                metrics=metrics, recommendation="Pass X_test with the same columns as X."))
    if not drafts:
        findings.insert(0, Finding(CHECK, Severity.INFO, "No duplicates found",
                                   _clean_summary(table, test, notes), metrics=metrics))
    return findings


# -- inputs -----------------------------------------------------------------------------------------
def _comparable(table: Table, notes: list[str], name: str = "X") -> np.ndarray:
    """Rows that can be compared exactly: rows holding a value that could not be read are left out,
    so they can never be reported as duplicates."""
    unreadable = table.unreadable_rows
    if unreadable is None:
        return np.ones(table.n_rows, dtype=bool)
    left_out = int(unreadable.sum())
    notes.append(f"{plural(left_out, 'row')} of {name} holding values that cannot be compared "
                 f"{'was' if left_out == 1 else 'were'} left out")
    return ~unreadable


def _read_test(X_test: Any, table: Table, budget: Budget) -> tuple[Table | None, str]:
    if X_test is None:
        return None, ""
    try:
        test = prepare_features(X_test, budget, name="X_test")
    except UnsupportedData as exc:
        return None, f"X_test was not read: {exc.message}"
    if test.n_features != table.n_features:
        return None, (f"X_test has {test.n_features:,} features but X has {table.n_features:,}; "
                      f"overlap not checked.")
    return test, ""


def _aligned(table: Table, test: Table | None) -> tuple[np.ndarray, np.ndarray | None]:
    if test is None:
        return table.values, None
    if table.categories or test.categories:
        return align_codes(table, test)
    return table.values, test.values


def _read_labels(y: Any, table: Table, budget: Budget) -> tuple[Labels | None, str]:
    """Labels usable for the conflict check, or None and why not."""
    if y is None:
        return None, ""
    n_y = n_samples(y)
    if n_y is not None and n_y != table.n_rows_total:
        return None, f"y has {n_y:,} labels but X has {table.n_rows_total:,} rows: conflicting labels not checked"
    try:
        labels = prepare_labels(y, table.rows, budget)
    except UnsupportedData as exc:
        return None, f"labels not checked: {exc.message}"
    if labels.target_type == "continuous":
        return None, "y looks continuous (a regression target): conflicting labels not checked"
    return labels, ""


# -- measurements -----------------------------------------------------------------------------------
def _overlap(test: Table, test_values: np.ndarray, train_bits: np.ndarray, train_hashes: np.ndarray,
             notes: list[str]) -> np.ndarray:
    """Local indices of test rows identical to a (comparable) training row."""
    test_bits = canonical_bits(test_values, inplace=True)  # our own copy
    ok = np.flatnonzero(_comparable(test, notes, "X_test"))
    return ok[rows_matching(test_bits[ok], row_hashes(test_bits[ok]), train_bits, train_hashes)]


def _later_duplicates(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows that repeat an earlier row (local indices), and the number of repeated distinct rows."""
    members = np.flatnonzero(groups >= 0)
    if members.size == 0:
        return members, 0
    _, first = np.unique(groups[members], return_index=True)  # members ascend, so first = earliest row
    later = np.ones(members.size, dtype=bool)
    later[first] = False
    return members[later], len(first)


def _conflicts(groups: np.ndarray, labels: Labels | None) -> tuple[np.ndarray, int]:
    """All rows (local indices) of duplicate groups carrying more than one distinct label."""
    members = np.flatnonzero(groups >= 0)
    if labels is None or members.size == 0:
        return np.empty(0, dtype=np.int64), 0
    g, codes = groups[members], labels.codes[members]
    valid = codes >= 0
    pairs = np.unique(np.stack([g[valid], codes[valid]], axis=1), axis=0)
    n_labels = np.bincount(pairs[:, 0], minlength=int(g.max()) + 1) if len(pairs) else np.zeros(1, int)
    bad = np.flatnonzero(n_labels > 1)
    return members[np.isin(g, bad)], len(bad)


# -- findings ---------------------------------------------------------------------------------------
def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def _sample_suffix(table: Table, test: Table | None) -> str:
    parts = []
    if table.sampled:
        parts.append(f"a random sample of {table.n_rows:,} of {table.n_rows_total:,} rows")
    if test is not None and test.sampled:
        parts.append(f"{test.n_rows:,} of {test.n_rows_total:,} test rows")
    return f" (in {' and '.join(parts)}; the true counts are likely higher)" if parts else ""


def _exact_draft(table: Table, later: np.ndarray, n_groups: int) -> tuple:
    share = len(later) / table.n_rows
    summary = (f"{plural(len(later), 'row')} ({_share(len(later), table.n_rows)}) "
               f"{'repeats' if len(later) == 1 else 'repeat'} an earlier row exactly "
               f"({plural(n_groups, 'distinct row')} repeated); indices are the repeating rows.")
    advice = ("Drop them before splitting (df.drop_duplicates(), or np.unique(X, axis=0, return_index=True)) "
              "so copies cannot land on both sides of a split and inflate test scores; if repeats are "
              "expected (repeated measurements), keep them together with GroupKFold / GroupShuffleSplit.")
    sev = Severity.MEDIUM if share >= DUPLICATE_MEDIUM_SHARE else Severity.LOW
    return sev, "Exact duplicate rows", summary, advice, table.positions(later), ()


def _conflict_draft(table: Table, rows: np.ndarray, n_groups: int) -> tuple:
    summary = (f"{plural(len(rows), 'row')} ({_share(len(rows), table.n_rows)}) in {plural(n_groups, 'group')} of identical "
               f"feature rows carry different labels — a label-flip / poisoning signal, or features that "
               f"cannot separate the classes.")
    advice = ("Inspect these rows (indices are every row of each conflicting group): trace where each label "
              "came from, fix or remove wrong labels, and drop groups you cannot resolve.")
    sev = Severity.HIGH if len(rows) >= HIGH_SHARE * table.n_rows else Severity.MEDIUM
    return sev, "Duplicates with conflicting labels", summary, advice, table.positions(rows), POISONING_REFS


def _overlap_draft(table: Table, test: Table, overlap: np.ndarray) -> tuple:
    summary = (f"{len(overlap):,} of {plural(test.n_rows, 'test row')} ({_share(len(overlap), test.n_rows)}) "
               f"{'is' if len(overlap) == 1 else 'are'} identical to a training row; indices are positions "
               f"in X_test.")
    advice = ("Remove these rows from the test set, or split by entity / group (GroupShuffleSplit) after "
              "dropping duplicates; otherwise test scores overstate generalisation and privacy audits "
              "(membership inference) are biased.")
    sev = Severity.HIGH if len(overlap) >= HIGH_SHARE * test.n_rows else Severity.MEDIUM
    return sev, "Train/test overlap", summary, advice, test.positions(overlap), ()


def _clean_summary(table: Table, test: Table | None, notes: list[str]) -> str:
    text = (f"{plural(table.n_rows_total, 'row')} × {plural(table.n_features, 'column')} checked: "
            f"no exact duplicate rows")
    if test is not None:
        text += f"; no test row (of {test.n_rows_total:,}) identical to a training row"
    text += _sample_suffix(table, test) + "."
    if notes:
        text += " Note: " + "; ".join(notes) + "."
    return text


def _skipped(title: str, message: str, severity: str) -> Finding:
    metrics = {"exact_duplicates": None, "conflicting_label_duplicates": None, "train_test_overlap": None}
    return Finding(CHECK, Severity.parse(severity), title, message, metrics=metrics,
                   recommendation="Pass the features as a 2-D numpy array, pandas DataFrame, scipy sparse "
                                  "matrix or torch tensor to run this check.")
