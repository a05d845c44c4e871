"""``data.duplicates``: exact duplicate rows, duplicates with conflicting labels, train/test overlap.

Rows are compared exactly: values are put in a canonical bit pattern (``-0.0`` -> ``0.0``, every NaN
-> one NaN), hashed per row with a vectorised 64-bit hash, and rows that share a hash are then
compared bit for bit, so a hash collision can never report a false duplicate.

Near-duplicates are distinct rows (never exact copies of each other, which are counted above) that are
almost identical: in a robustly standardised copy of the features (per column: minus the median,
divided by ``max(IQR / 1.349, 1.2533 * mean |x - median|)``, so jittered copies cannot shrink a
column's scale to nothing), two rows closer than :data:`NEAR_RATIO` times the typical distance from a
row to its 5th nearest neighbour. The typical distance is the median over (at most
:data:`NEAR_SCALE_QUERIES`) rows, found with scikit-learn's ``NearestNeighbors``. Candidate pairs come
from a few randomly shifted grids on the main principal directions (cells :data:`NEAR_CELL` times the
threshold wide) and are confirmed with their exact distance in the full space. The search looks at
no more than :data:`NEAR_MAX_ROWS` distinct rows; larger data is sampled (stated on the card) by a
seeded hash of each row's content, so the sample does not depend on row order. On the clean
scikit-learn data sets iris, wine, breast_cancer and digits it flags no row.

Big numeric arrays (more rows than a table may hold) are sampled **by content** (:func:`content_sample`):
every row gets a key from a random projection of its values, and the rows with the lowest keys are read,
so all copies of a row are in the sample or none is. The sample's duplicate share then estimates the
whole data's. The keying pass also counts exact duplicates over every row (64-bit content hashes) up to
:data:`EXACT_COUNT_ROWS` rows (``exact_duplicates_total``); beyond that the share is estimated from the
sample with a 95 % interval (``exact_duplicate_rate_ci``). Test rows are picked by the same keys, so
train/test overlap is estimated alike. Other inputs too big to read whole are sampled at random
rows, which splits most pairs of copies: their card says the true counts are likely higher.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._intervals import cluster_ratio_ci, proportion_ci
from .._tabular import (Labels, Table, UnsupportedData, align_codes, labels_for, plural, prepare_features,
                        row_limit)
from ..budget import Budget
from ..registry import register_check

CHECK = "data.duplicates"
#: Exact duplicates are medium (not low) from this share of rows.
DUPLICATE_MEDIUM_SHARE = 0.10
#: Conflicting-label duplicates and train/test overlap are high from this share of rows.
HIGH_SHARE = 0.01
#: Near-duplicates: closer than this times the median distance of a row to its 5th nearest neighbour.
#: Clean iris / wine / breast_cancer / digits have no distinct pair below 0.17; copies jittered by
#: 1e-3 of each feature's scale sit below 0.035.
NEAR_RATIO = 0.08
#: Plain near-duplicates are info below this share of rows, low from it.
NEAR_LOW_SHARE = 0.005
#: The near-duplicate search looks at no more than this many distinct rows (sampled beyond).
NEAR_MAX_ROWS = 20_000
#: Fewer distinct rows than this: no typical distance to compare with, near-duplicates not searched.
NEAR_MIN_ROWS = 10
#: Rows whose 5th-neighbour distance sets the typical distance.
NEAR_SCALE_QUERIES = 400
#: Rows the column scales and principal directions are estimated from.
NEAR_FIT_ROWS = 4_000
NEAR_K = 5
#: Candidate grids: dimensions (principal directions), cell width in thresholds, number of shifted grids.
NEAR_DIMS = 16
NEAR_CELL = 4.0
NEAR_GRIDS = 4
#: Stop confirming candidates beyond this many pairs (very dense data); the card says so.
NEAR_MAX_CANDIDATES = 5_000_000
#: Candidate pairs are confirmed in chunks of this many float64 cells (16 MB a temporary array).
NEAR_CHUNK_CELLS = 2_000_000

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


def content_hashes(values: np.ndarray, block: int = 16_384, as_dtype: Any = None) -> np.ndarray:
    """:func:`row_hashes` of :func:`canonical_bits` of a float array, one block of rows at a time, so the
    extra memory is a block, not a canonical copy of all of ``values``. ``as_dtype``: hash the values
    rounded to this dtype (rows equal after rounding share a hash)."""
    out = np.empty(len(values), dtype=np.uint64)
    for start in range(0, len(values), block):
        part = values[start:start + block]
        if as_dtype is not None:
            with np.errstate(over="ignore"):  # beyond the dtype's range: ±inf, as a cast does
                part = part.astype(as_dtype)
        out[start:start + block] = row_hashes(canonical_bits(part), block)
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


# -- near-duplicates (pure kernels) -----------------------------------------------------------------
def robust_scale(values: np.ndarray, fit_rows: np.ndarray | None = None) -> np.ndarray:
    """Standardised copy: ``(x - median) / max(IQR / 1.349, 1.2533 * mean |x - median|)`` per column,
    constant columns dropped. The mean absolute deviation keeps the scale of a mostly-constant column
    (where the IQR is 0 or, after jittered copies are added, tiny) at its real spread. The statistics
    come from ``fit_rows`` (default: all rows)."""
    fit = values if fit_rows is None else values[fit_rows]
    med = np.median(fit, axis=0)
    q1, q3 = np.percentile(fit, [25, 75], axis=0)
    dev = np.abs(fit - med).mean(axis=0) * 1.2533
    scale = np.maximum((q3 - q1) / 1.349, dev)
    flat = np.flatnonzero(scale == 0)
    if fit_rows is not None and flat.size:  # constant in the fitted rows, maybe not in all of them
        scale[flat] = np.abs(values[:, flat] - med[flat]).mean(axis=0) * 1.2533
    keep = scale > 0
    return (values[:, keep] - med[keep]) / scale[keep]


def typical_distance(Z: np.ndarray, queries: np.ndarray, k: int = NEAR_K) -> float:
    """Median distance from the ``queries`` rows of ``Z`` to their ``k``-th nearest other row."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(Z) - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(Z).kneighbors(Z[queries])
    return float(np.median(dist[:, k]))  # column 0 is the row itself (rows are distinct)


def _grid_keys(P: np.ndarray, shift: np.ndarray, width: float) -> np.ndarray:
    cells = np.floor((P + shift) / width).astype(np.int64)
    return row_hashes(np.ascontiguousarray(cells).view(np.uint64))


def _same_key_pair_chunks(keys: np.ndarray, limit: int, chunk: int = 65_536):
    """Yield ``(a, b)``: the pairs of positions sharing a key, each pair once, in chunks of about
    ``chunk`` pairs and at most ``limit`` pairs in all.

    Memory stays linear in ``len(keys)`` however many pairs there are: a run of ``L`` equal keys has
    ``L (L - 1) / 2`` pairs, so a dense grid would otherwise need gigabytes for one array of pairs.
    """
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    lengths = np.diff(np.r_[starts, len(sk)])
    multi = lengths > 1
    starts, lengths = starts[multi], lengths[multi]
    if starts.size == 0:
        return
    # every sorted position inside a shared run pairs with each later position of its run
    pos = np.repeat(starts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    later = np.repeat(starts + lengths, lengths) - pos - 1
    ends = np.cumsum(later)
    done, left = 0, limit
    while done < len(pos) and left > 0:
        stop = max(int(np.searchsorted(ends, ends[done] - later[done] + min(chunk, left), side="right")), done + 1)
        p, n_later = pos[done:stop], later[done:stop]
        first = np.repeat(p, n_later)
        second = first + 1 + (np.arange(n_later.sum()) - np.repeat(np.cumsum(n_later) - n_later, n_later))
        first, second = first[:left], second[:left]
        left -= len(first)
        done = stop
        yield order[first], order[second]


def near_pairs(Z: np.ndarray, radius: float, rng: np.random.Generator, budget: Budget | None = None,
               ) -> tuple[np.ndarray, bool]:
    """Pairs ``(i, j)``, ``i < j``, of rows of ``Z`` closer than ``radius`` (Euclidean), and whether
    the search stopped early at :data:`NEAR_MAX_CANDIDATES`.

    Candidates share a cell of one of :data:`NEAR_GRIDS` randomly shifted grids on the first
    :data:`NEAR_DIMS` principal directions (cells :data:`NEAR_CELL` x ``radius`` wide, so a pair at a
    quarter of the radius is missed by one grid with probability at most 25 %, by all four under 0.4 %);
    every candidate is then confirmed with its exact distance.
    """
    n, d = Z.shape
    if n < 2 or not radius > 0:
        return np.empty((0, 2), dtype=np.int64), False
    centred = Z - Z.mean(axis=0)
    if d > NEAR_DIMS:
        fit = centred[:: max(1, n // NEAR_FIT_ROWS)]  # directions from a few thousand rows are plenty
        _, vectors = np.linalg.eigh(fit.T @ fit)
        P = centred @ vectors[:, ::-1][:, :NEAR_DIMS]
    else:
        P = centred
    width = NEAR_CELL * radius
    chunk = max(1_000, NEAR_CHUNK_CELLS // max(d, 1))
    found, seen, stopped = [], 0, False
    for _ in range(NEAR_GRIDS):
        keys = _grid_keys(P, rng.uniform(0.0, width, size=P.shape[1]), width)
        for aa, bb in _same_key_pair_chunks(keys, NEAR_MAX_CANDIDATES - seen + 1, chunk):
            seen += len(aa)
            if seen > NEAR_MAX_CANDIDATES:
                stopped = True
                aa, bb = aa[:len(aa) - 1], bb[:len(bb) - 1]
            diff = Z[aa]
            diff -= Z[bb]
            close = np.einsum("ij,ij->i", diff, diff) < radius * radius
            if close.any():
                found.append(np.stack([np.minimum(aa[close], bb[close]), np.maximum(aa[close], bb[close])], 1))
            if budget is not None:
                budget.checkpoint()
        if stopped:
            break
    if not found:
        return np.empty((0, 2), dtype=np.int64), stopped
    return np.unique(np.concatenate(found), axis=0), stopped


# -- content-coordinated sampling (big numeric arrays) ----------------------------------------------
#: Rows are keyed in blocks of about this many float64 cells (16 MB).
KEY_BLOCK_CELLS = 2_000_000
#: Keying every row may use this share of the time budget; beyond it rows are sampled at random.
KEY_TIME_SHARE = 0.5
#: Up to this many rows the keys of all rows are kept (8 bytes a row, 128 MB at most) and exact
#: duplicates are counted over the whole data; beyond it their share is estimated from the sample.
EXACT_COUNT_ROWS = 16_000_000


@dataclass
class ContentSample:
    """Rows chosen by content (a row is in when its key is below ``threshold``; ``rows`` is None when the
    data is read at random instead), and exact duplicates counted over all rows when they were."""

    rows: np.ndarray | None
    salt: np.uint64
    threshold: np.uint64
    n_total: int
    limit: int
    duplicates_total: int | None = None


class _KeyingTooSlow(Exception):
    """Keying every row would take more than :data:`KEY_TIME_SHARE` of the time budget."""


def _numeric_2d(X: Any) -> np.ndarray | None:
    """``X`` as a plain 2-D numeric ndarray view (memmaps included), or None for anything else."""
    if not isinstance(X, np.ndarray) or X.dtype.names or X.dtype.kind not in "biuf" or X.ndim not in (1, 2):
        return None
    a = X.view(np.ndarray)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _keyed_rows(a: np.ndarray, salt: np.uint64, threshold: np.uint64, budget: Budget,
                keep_all: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Positions and keys of the rows of ``a`` whose key is below ``threshold`` (and every row's key with
    ``keep_all``), one block at a time. A key is the row's exact 64-bit content hash
    (:func:`content_hashes`: equal rows, -0.0/0.0 and NaNs included, share it), salted and mixed."""
    block = max(1, KEY_BLOCK_CELLS // max(a.shape[1], 1))
    rows, keys = [], []
    every = np.empty(len(a), dtype=np.uint64) if keep_all else None
    started = budget.elapsed
    for i, start in enumerate(range(0, len(a), block)):
        k = _mix(content_hashes(a[start:start + block]) ^ salt)
        if every is not None:
            every[start:start + len(k)] = k
        inside = np.flatnonzero(k < threshold)
        rows.append(start + inside)
        keys.append(k[inside])
        budget.checkpoint()
        done = min(start + block, len(a)) / len(a)
        if i >= 2 and (budget.elapsed - started) / done > KEY_TIME_SHARE * budget.seconds:  # on course to overrun
            raise _KeyingTooSlow
    return np.concatenate(rows), np.concatenate(keys), every


def _bottom(rows: np.ndarray, keys: np.ndarray, limit: int) -> tuple[np.ndarray, np.uint64 | None]:
    """The rows of the ``limit`` lowest keys, whole key groups only (copies share a key), and the new
    threshold (``None``: all rows kept)."""
    if len(rows) <= limit:
        return rows, None
    cut = np.sort(keys)[limit]
    return rows[keys < cut], cut


def content_sample(X: Any, limit: int, budget: Budget) -> ContentSample | None:
    """About ``limit`` rows of a big numeric array, chosen by a hash of their content, so every copy of a
    row is in the sample or none is (distinct sampling: P. B. Gibbons, "Distinct Sampling for
    Highly-Accurate Answers to Distinct Values Queries and Event Reports", VLDB 2001). Reads every row
    once; up to :data:`EXACT_COUNT_ROWS` rows it also counts exact duplicates over all of them. ``None``
    when ``X`` is not a plain numeric array, fits the limit whole, or keying would be too slow.

    When a few contents repeat so often that the lowest keys hold under half of ``limit`` rows (a big
    group straddles the cut), the rows are read at random instead (``rows`` is None) and the exact
    count still stands.
    """
    a = _numeric_2d(X)
    if a is None or len(a) <= limit:
        return None
    salt = np.uint64(int(budget.rng().integers(0, 2**63)))
    # a little above the expected share, then the ``limit`` lowest keys (bottom-k)
    share = min(1.0, (limit + 4.0 * np.sqrt(limit) + 10.0) / len(a))
    threshold = np.uint64(min(int(share * 2.0**64), 2**64 - 1))
    try:
        rows, keys, every = _keyed_rows(a, salt, threshold, budget, keep_all=len(a) <= EXACT_COUNT_ROWS)
    except _KeyingTooSlow:
        budget.note(f"rows sampled at random: keying all {len(a):,} rows by content would take more than "
                    f"{100 * KEY_TIME_SHARE:.0f}% of the time budget")
        return None
    total = None
    if every is not None:
        every.sort()
        total = int(len(a) - 1 - np.count_nonzero(every[1:] != every[:-1]))
        del every
    rows, cut = _bottom(rows, keys, limit)
    sample = ContentSample(rows, salt, threshold if cut is None else cut, len(a), limit, total)
    if len(rows) < max(1, limit // 2):
        budget.note("rows sampled at random: a few rows repeat so often that a sample by content would hold "
                    "too few rows")
        sample.rows = None
    return sample


def _same_content_rows(X_test: Any, sample: ContentSample, budget: Budget) -> np.ndarray | None:
    """The rows of ``X_test`` a content sample of ``X`` holds (same keys, at most ``limit``: the lowest);
    ``None`` when ``X_test`` cannot be keyed like ``X``."""
    a = _numeric_2d(X_test)
    if a is None or sample.rows is None:
        return None
    try:
        rows, keys, _ = _keyed_rows(a, sample.salt, sample.threshold, budget)
    except _KeyingTooSlow:
        return None
    return _bottom(rows, keys, sample.limit)[0]


def _duplicate_rate(groups: np.ndarray, later: np.ndarray, n_rows: int,
                    sample: ContentSample | None) -> dict[str, Any]:
    """The share of rows that repeat an earlier row: counted over all rows when the keys were kept, else
    estimated from a content sample with its 95 % interval."""
    if sample is not None and sample.duplicates_total is not None:
        return {"exact_duplicates_total": sample.duplicates_total,
                "exact_duplicate_rate": round(sample.duplicates_total / sample.n_total, 6)}
    if n_rows == 0:
        return {"exact_duplicate_rate": None}
    out: dict[str, Any] = {"exact_duplicate_rate": round(len(later) / n_rows, 6)}
    if sample is not None and sample.rows is not None:
        sizes = np.bincount(groups[groups >= 0]) if (groups >= 0).any() else np.zeros(0, dtype=np.int64)
        sizes = sizes[sizes > 0]
        singles = n_rows - int(sizes.sum())
        out["exact_duplicate_rate_ci"] = cluster_ratio_ci(np.concatenate([sizes - 1, np.zeros(singles)]),
                                                          np.concatenate([sizes, np.ones(singles)]))
    return out


# -- the check --------------------------------------------------------------------------------------
@register_check(CHECK, applies_to="dataset", title="Duplicates and leakage", cost="fast")
def duplicates(*, X: Any, y: Any = None, X_test: Any = None, y_test: Any = None,
               feature_names: Any = None, budget: Budget) -> list[Finding]:
    """Exact duplicate rows, identical rows with different labels, test rows identical to training rows.

    ``y_test`` is accepted so the check runs on a whole dataset artifact; it is not used.
    """
    try:
        keyed = _content_sample(X, budget)
        by_content = keyed if keyed is not None and keyed.rows is not None else None
        rows = None if by_content is None else by_content.rows
        table = prepare_features(X, budget, feature_names, rows=rows, y=y)
    except UnsupportedData as exc:
        return [_skipped("Duplicates not checked", exc.message, exc.severity)]
    notes = list(table.notes)
    train_ok = _comparable(table, notes)
    test_rows = None if by_content is None or X_test is None else _same_content_rows(X_test, by_content, budget)
    if test_rows is not None and len(test_rows) == 0:
        test, test_problem = None, ("X_test was not compared: none of its rows falls in the training sample's "
                                    "content range (X_test is small next to X), so no overlap can be measured.")
    else:
        test, test_problem = _read_test(X_test, table, budget, test_rows)
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
    metrics.update(_duplicate_rate(groups, later, table.n_rows, keyed if table.sampled else None))
    total = metrics.get("exact_duplicates_total")
    if len(later) or total:
        drafts.append(_exact_draft(table, later, n_groups, total))
    conflict_rows, n_conflict_groups = _conflicts(groups, labels)
    metrics.update(conflicting_label_duplicates=None if labels is None else len(conflict_rows),
                   conflicting_groups=None if labels is None else n_conflict_groups)
    if len(conflict_rows):
        drafts.append(_conflict_draft(table, conflict_rows, n_conflict_groups))
    near = _near_duplicates(table, train_values, hashes, groups, train_ok, labels, budget, notes)
    metrics.update(near_duplicates=near.count, conflicting_label_near_duplicates=near.conflict_count,
                   near_duplicate_pairs=near.n_pairs, near_duplicate_ratio=NEAR_RATIO,
                   near_duplicate_radius=near.radius, near_duplicate_rows_searched=near.searched)
    if len(near.conflict_rows):
        drafts.append(_near_conflict_draft(table, near))
    if len(near.rows):
        drafts.append(_near_draft(table, near))
    metrics["train_test_overlap"] = None
    if test is not None and test_values is not None:
        overlap = _overlap(test, test_values, bits[train_ok], hashes[train_ok], notes)
        metrics.update(train_test_overlap=len(overlap), n_test_rows=test.n_rows_total,
                       train_test_overlap_rate=round(len(overlap) / max(test.n_rows, 1), 6))
        if test.sampled and by_content is not None:  # test rows of the same keys: copies sampled alike
            metrics["train_test_overlap_rate_ci"] = proportion_ci(len(overlap), test.n_rows)
        if len(overlap):
            drafts.append(_overlap_draft(table, test, overlap))
    if table.sampled:
        metrics.update(sampled_rows=table.n_rows, total_rows=table.n_rows_total,
                       sample="by content" if by_content is not None else "random rows")
    if notes:
        metrics["notes"] = notes
    findings = [Finding(CHECK, sev, title, summary + _sample_suffix(table, test, metrics), metrics=metrics,
                        indices=idx, recommendation=advice)
                for sev, title, summary, advice, idx in drafts]
    if test_problem:
        findings.append(Finding(CHECK, Severity.INFO, "Train/test overlap not checked", test_problem,
                                metrics=metrics, recommendation="Pass X_test with the same columns as X."))
    if not drafts:
        findings.insert(0, Finding(CHECK, Severity.INFO, "No duplicates found",
                                   _clean_summary(table, test, notes, near.count is not None), metrics=metrics))
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


def _content_sample(X: Any, budget: Budget) -> ContentSample | None:
    """:func:`content_sample` of ``X`` at the table's row limit, noted on the card when taken."""
    a = _numeric_2d(X)
    if a is None:
        return None
    sample = content_sample(a, row_limit(a.shape[1], budget), budget)
    if sample is not None and sample.rows is not None:
        budget.note(f"sampled {len(sample.rows):,} of {sample.n_total:,} rows by a hash of their content, so "
                    f"every copy of a row is in the sample or none is")
    return sample


def _read_test(X_test: Any, table: Table, budget: Budget, rows: np.ndarray | None = None) -> tuple[Table | None, str]:
    if X_test is None:
        return None, ""
    try:
        test = prepare_features(X_test, budget, name="X_test", rows=rows)
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
    try:
        labels = labels_for(y, table, budget)
    except UnsupportedData as exc:
        return None, f"labels not checked: {exc.message}"
    if labels.target_type == "continuous":
        return None, "y looks continuous (a regression target): conflicting labels not checked"
    return labels, ""


# -- measurements -----------------------------------------------------------------------------------
@dataclass
class _Near:
    """What the near-duplicate search found (local row indices; counts ``None`` when not searched)."""

    count: int | None = None
    conflict_count: int | None = None
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    conflict_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    n_pairs: int | None = None
    n_groups: int = 0
    n_conflict_pairs: int = 0
    radius: float | None = None
    searched: int = 0
    distinct: int = 0


def _owners(groups: np.ndarray) -> np.ndarray:
    """For every row, the first row with the same exact content (itself for unique rows)."""
    n = len(groups)
    owner = np.arange(n, dtype=np.int64)
    members = np.flatnonzero(groups >= 0)
    if members.size:
        g = groups[members]
        first = np.full(int(g.max()) + 1, n, dtype=np.int64)
        np.minimum.at(first, g, members)
        owner[members] = first[g]
    return owner


def _content_rank(hashes: np.ndarray, seed: int) -> np.ndarray:
    """Positions ordering rows by a seeded hash of their content (independent of row order)."""
    mixed = _mix(hashes ^ np.uint64((int(seed) * _GOLDEN + 1) & _MASK))
    return np.argsort(mixed, kind="stable")


def _near_duplicates(table: Table, values: np.ndarray, hashes: np.ndarray, groups: np.ndarray,
                     ok: np.ndarray, labels: Labels | None, budget: Budget, notes: list[str]) -> _Near:
    """Distinct rows closer than :data:`NEAR_RATIO` x the typical 5th-neighbour distance, and the
    near pairs whose labels disagree. Exact copies of a row are searched once (as their first row)
    and never count as near pairs of each other."""
    usable = np.flatnonzero(table.readable)
    out = _Near()
    if usable.size == 0:
        return out
    finite = ok & np.isfinite(values[:, usable]).all(axis=1)
    left_out = int(ok.sum() - finite.sum())
    if left_out:
        notes.append(f"{plural(left_out, 'row')} with missing or infinite values left out of the "
                     f"near-duplicate search")
    owner = _owners(groups)
    reps = np.flatnonzero(finite & (owner == np.arange(table.n_rows)))
    out.distinct = len(reps)
    if len(reps) < NEAR_MIN_ROWS:
        notes.append(f"near-duplicates not searched: fewer than {NEAR_MIN_ROWS} distinct complete rows")
        return out
    rank = _content_rank(hashes[reps], budget.seed)
    if len(reps) > NEAR_MAX_ROWS:
        notes.append(f"near-duplicates searched among a sample of {NEAR_MAX_ROWS:,} of "
                     f"{len(reps):,} distinct rows")
        keep = np.sort(rank[:NEAR_MAX_ROWS])
        reps, rank = reps[keep], _content_rank(hashes[reps[keep]], budget.seed)
    Z = robust_scale(values[np.ix_(reps, usable)], np.sort(rank[:NEAR_FIT_ROWS]))
    budget.checkpoint()
    if Z.shape[1] == 0:
        return out
    scale = typical_distance(Z, np.sort(rank[:NEAR_SCALE_QUERIES]))
    out.radius = NEAR_RATIO * scale
    out.searched = len(reps)
    budget.checkpoint()
    pairs, stopped = near_pairs(Z, out.radius, budget.rng(), budget)
    if stopped:
        notes.append(f"near-duplicate search stopped after {NEAR_MAX_CANDIDATES:,} candidate pairs "
                     f"(very dense data); counts are lower bounds")
    a, b = reps[pairs[:, 0]], reps[pairs[:, 1]]
    out.n_pairs = len(pairs)
    involved = np.unique(np.concatenate([a, b]))
    out.count, out.n_groups = _near_count(a, b, involved)
    out.rows = np.flatnonzero(finite & np.isin(owner, involved))
    if labels is None:
        return out
    codes = labels.codes
    valid = finite & (codes >= 0)
    low = np.full(table.n_rows, np.iinfo(np.int64).max, dtype=np.int64)
    high = np.full(table.n_rows, -1, dtype=np.int64)
    np.minimum.at(low, owner[valid], codes[valid])
    np.maximum.at(high, owner[valid], codes[valid])
    labelled = (high[a] >= 0) & (high[b] >= 0)
    bad = labelled & (np.minimum(low[a], low[b]) != np.maximum(high[a], high[b]))
    out.n_conflict_pairs = int(bad.sum())
    out.conflict_rows = np.flatnonzero(finite & np.isin(owner, np.concatenate([a[bad], b[bad]])))
    out.conflict_count = len(out.conflict_rows)
    return out


def _near_count(a: np.ndarray, b: np.ndarray, involved: np.ndarray) -> tuple[int, int]:
    """Rows that nearly repeat another row (involved distinct rows minus groups), and the groups."""
    if involved.size == 0:
        return 0, 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ia, ib = np.searchsorted(involved, a), np.searchsorted(involved, b)
    graph = coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(len(involved), len(involved)))
    n_groups, _ = connected_components(graph, directed=False)
    return len(involved) - int(n_groups), int(n_groups)


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


def _sample_suffix(table: Table, test: Table | None, metrics: dict[str, Any] | None = None) -> str:
    parts = []
    if table.sampled:
        how = "a content sample" if (metrics or {}).get("sample") == "by content" else "a random sample"
        parts.append(f"{how} of {table.n_rows:,} of {table.n_rows_total:,} rows")
    if test is not None and test.sampled:
        parts.append(f"{test.n_rows:,} of {test.n_rows_total:,} test rows")
    if not parts:
        return ""
    ci = (metrics or {}).get("exact_duplicate_rate_ci")
    if (metrics or {}).get("exact_duplicates_total") is not None:
        keeps = ", which keeps every copy of a row together" if metrics.get("sample") == "by content" else ""
        return f" (the rows shown come from {' and '.join(parts)}{keeps})"
    if ci is None:
        return f" (in {' and '.join(parts)}; the true counts are likely higher)"
    rate = metrics["exact_duplicate_rate"]
    return (f" (in {' and '.join(parts)}, which keeps every copy of a row together: in the whole data about "
            f"{100 * rate:.2g}% of rows repeat an earlier one, 95% interval {100 * ci[0]:.2g}–{100 * ci[1]:.2g}%)")


def _exact_draft(table: Table, later: np.ndarray, n_groups: int, total: int | None = None) -> tuple:
    share = len(later) / max(table.n_rows, 1)
    summary = (f"{plural(len(later), 'row')} ({_share(len(later), table.n_rows)}) "
               f"{'repeats' if len(later) == 1 else 'repeat'} an earlier row exactly "
               f"({plural(n_groups, 'distinct row')} repeated); indices are the repeating rows.")
    if total is not None:  # counted over every row by content hash; the table holds a sample of them
        share = total / table.n_rows_total
        summary = (f"{plural(total, 'row')} ({_share(total, table.n_rows_total)}) of all {table.n_rows_total:,} "
                   f"{'repeats' if total == 1 else 'repeat'} an earlier row exactly (counted over every row by "
                   f"64-bit content hashes); indices are the {plural(len(later), 'repeating row')} in the sample.")
    advice = ("Drop them before splitting (df.drop_duplicates(), or np.unique(X, axis=0, return_index=True)) "
              "so copies cannot land on both sides of a split and inflate test scores; if repeats are "
              "expected (repeated measurements), keep them together with GroupKFold / GroupShuffleSplit.")
    sev = Severity.MEDIUM if share >= DUPLICATE_MEDIUM_SHARE else Severity.LOW
    return sev, "Exact duplicate rows", summary, advice, table.positions(later)


def _conflict_draft(table: Table, rows: np.ndarray, n_groups: int) -> tuple:
    summary = (f"{plural(len(rows), 'row')} ({_share(len(rows), table.n_rows)}) in {plural(n_groups, 'group')} of identical "
               f"feature rows carry different labels — a label-flip / poisoning signal, or features that "
               f"cannot separate the classes.")
    advice = ("Inspect these rows (indices are every row of each conflicting group): trace where each label "
              "came from, fix or remove wrong labels, and drop groups you cannot resolve.")
    sev = Severity.HIGH if len(rows) >= HIGH_SHARE * table.n_rows else Severity.MEDIUM
    return sev, "Duplicates with conflicting labels", summary, advice, table.positions(rows)


def _near_conflict_draft(table: Table, near: _Near) -> tuple:
    rows = near.conflict_rows
    summary = (f"{plural(len(rows), 'row')} ({_share(len(rows), table.n_rows)}) in "
               f"{plural(near.n_conflict_pairs, 'pair')} of almost identical (not identical) feature rows "
               f"carry different labels — copies jittered to slip past exact-duplicate checks are a "
               f"typical label-flip poisoning pattern.")
    advice = ("Inspect these rows (indices are every row of each conflicting near-duplicate pair, with their "
              "exact copies): trace where each copy and label came from, and remove copies you cannot "
              "vouch for before training.")
    summary += _near_sample_suffix(near)
    sev = Severity.HIGH if len(rows) >= HIGH_SHARE * table.n_rows else Severity.MEDIUM
    return sev, "Near-duplicates with conflicting labels", summary, advice, table.positions(rows)


def _near_sample_suffix(near: _Near) -> str:
    if near.searched >= near.distinct:
        return ""
    return (f" Searched among a sample of {near.searched:,} of {near.distinct:,} distinct rows (at most "
            f"{NEAR_MAX_ROWS:,}, to stay fast); pairs with a row outside the sample are missed, so the true "
            f"counts are likely higher.")


def _near_draft(table: Table, near: _Near) -> tuple:
    count = int(near.count or 0)
    summary = (f"{plural(count, 'row')} ({_share(count, table.n_rows)}) nearly {'repeats' if count == 1 else 'repeat'} "
               f"another row ({plural(near.n_groups, 'group')}, {plural(int(near.n_pairs or 0), 'pair')}): closer "
               f"than {NEAR_RATIO:g}× the typical distance to a 5th nearest neighbour in robustly scaled "
               f"features, without being exact copies; indices are every row involved.")
    advice = ("Check whether these are repeated measurements, augmented copies or re-ingested records; "
              "deduplicate or keep each group on one side of a split (GroupKFold / GroupShuffleSplit).")
    summary += _near_sample_suffix(near)
    share = count / table.n_rows if table.n_rows else 0.0
    sev = Severity.LOW if share >= NEAR_LOW_SHARE else Severity.INFO
    return sev, "Near-duplicate rows", summary, advice, table.positions(near.rows)


def _overlap_draft(table: Table, test: Table, overlap: np.ndarray) -> tuple:
    summary = (f"{len(overlap):,} of {plural(test.n_rows, 'test row')} ({_share(len(overlap), test.n_rows)}) "
               f"{'is' if len(overlap) == 1 else 'are'} identical to a training row; indices are positions "
               f"in X_test.")
    advice = ("Remove these rows from the test set, or split by entity / group (GroupShuffleSplit) after "
              "dropping duplicates; otherwise test scores overstate generalisation and privacy audits "
              "(membership inference) are biased.")
    sev = Severity.HIGH if len(overlap) >= HIGH_SHARE * test.n_rows else Severity.MEDIUM
    return sev, "Train/test overlap", summary, advice, test.positions(overlap)


def _clean_summary(table: Table, test: Table | None, notes: list[str], near_searched: bool = False) -> str:
    text = (f"{plural(table.n_rows_total, 'row')} × {plural(table.n_features, 'column')} checked: "
            f"no exact duplicate rows" + (" and no near-duplicates" if near_searched else ""))
    if test is not None:
        text += f"; no test row (of {test.n_rows_total:,}) identical to a training row"
    text += _sample_suffix(table, test) + "."
    if notes:
        text += " Note: " + "; ".join(notes) + "."
    return text


def _skipped(title: str, message: str, severity: str) -> Finding:
    metrics = {"exact_duplicates": None, "conflicting_label_duplicates": None, "train_test_overlap": None,
               "near_duplicates": None, "conflicting_label_near_duplicates": None}
    return Finding(CHECK, Severity.parse(severity), title, message, metrics=metrics,
                   recommendation="Pass the features as a 2-D numpy array, pandas DataFrame, scipy sparse "
                                  "matrix or torch tensor to run this check.")
