"""``data.backdoor``: trigger-style poisoning (BadNets) found in the training data alone.

A BadNets backdoor (Gu, Dolan-Gavitt & Garg 2017, "BadNets: Identifying Vulnerabilities in the
Machine Learning Model Supply Chain", arXiv 1708.06733) stamps a small fixed pattern — a white
2×2 patch in an image corner, or a few features set to one constant — on a few training rows and
relabels them to a target class. The model learns "pattern ⇒ target class" and keeps its clean
accuracy, so accuracy does not reveal it. The data does: the same exact value at the same few
features in a subset of *one* class, rare everywhere else, on rows that otherwise look like other
classes.

Data-only search (:func:`find_triggers`), all vectorised numpy:

1. candidate values per feature: its maximum, its minimum and its most frequent value (values held
   by more than half of the rows are background, not triggers);
2. a candidate (feature, value) is *enriched* in class ``c`` when at least ``min_support`` rows of
   ``c`` carry it and its share inside ``c`` is at least :data:`MIN_LIFT` × its share outside;
3. per class, enriched candidates that mark (almost) the same rows (Jaccard ≥ :data:`MIN_JACCARD`
   within the class) are joined into patterns (connected components); a pattern needs at least two
   features;
4. rows carrying (nearly) all of a pattern are its carriers; the pattern is kept when the carriers
   are at least ``min_support`` rows and at least :data:`MIN_PURITY` of all carriers are in ``c``;
5. confirmation: with the pattern's features left out, a k-nearest-neighbour vote among the other
   rows says which class each carrier looks like. Dirty-label poisoning shows as carriers that look
   like *other* classes (``mismatch_rate``); a class-specific constant on rows that look like their
   own class (e.g. zeros coding "not measured") is a legitimate shortcut and is only noted.

Image layout is inferred from the input's shape: ``(N, H, W)``, ``(N, C, H, W)``, ``(N, H, W, C)``
(C in 1, 3, 4) or flat rows whose length is a square (64 → 8×8, 784 → 28×28, stated as assumed).

With the model fitted on the data (``model=``; the watcher passes it when a cell fits a model on
this data), two more questions get answered, always on a private copy of the model:

* **Is the model backdoored?** Every confirmed pattern is stamped on up to :data:`STAMP_ROWS` rows
  of other classes; the share whose prediction jumps to the model's prediction for the carriers is
  the attack success rate, next to a control (the same values stamped on as many random features).
  A high rate is critical: the trigger works on the trained model (Gu et al.'s own test).
* **What does its representation say?** (torch models) The input of the last linear layer is the
  penultimate representation. Per class, activation clustering (Chen et al., "Detecting Backdoor
  Attacks on Deep Neural Networks by Activation Clustering", arXiv 1811.03728: PCA to 10 dimensions,
  2-means, a cluster below 35 % of its class is suspect) proposes suspect clusters. It splits clean
  classes too (measured on digits: most clean classes have a small cluster), so every suspect
  cluster is verified on the model by a trigger-transfer test (:func:`_offset_test`) and reported
  only when it passes; spectral signatures (Tran, Li & Madry, "Spectral Signatures in Backdoor
  Attacks", NeurIPS 2018, Alg. 1) are reported alongside. This catches triggers that are not exact
  constants (a blended, noisy pattern), which the data-only search cannot see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ...findings import Finding, Severity
from .._tabular import (
    Labels,
    Table,
    UnsupportedData,
    plural,
    prepare_features,
    labels_for,
)
from .._models import ModelProbe, probe_for
from ..budget import Budget, CheckCancelled, CheckTimeout
from ..registry import register_check

CHECK = "data.backdoor"

#: A candidate value must be at least this many times more common inside the class than outside.
MIN_LIFT = 4.0
#: Two candidate features belong to one pattern when their carrier rows in the class overlap this much.
MIN_JACCARD = 0.8
#: A carrier has at least this share of the pattern's features (and at least two).
CARRY_SHARE = 0.75
#: At least this share of all carriers of a pattern must be in its class.
MIN_PURITY = 0.9
#: Carriers looking like another class (kNN on the other features) from this share mean dirty-label poisoning.
MIN_MISMATCH = 0.3
#: A confirmed pattern is high severity from this share of rows.
HIGH_SHARE = 0.01
#: A feature joins a found pattern when this share of its carriers hold one value ...
GROW_CARRIER_SHARE = 0.95
#: ... and at most this share of the other rows hold it.
GROW_OUTSIDE_SHARE = 0.35
#: Values held by more than this share of rows are background, never trigger candidates.
BACKGROUND_SHARE = 0.5
#: Neighbours in the confirmation vote.
K_NEIGHBOURS = 10
#: Patterns are discovered on at most this many rows (evenly spaced); carriers are found among all rows.
DISCOVERY_ROWS = 20_000
#: At most this many carriers get the confirmation vote (evenly spaced).
MAX_CONFIRM = 2000
#: At most this many features go into the search (the most varied ones, if there are more).
MAX_FEATURES = 4096
#: Candidate indicator matrices are built in blocks of at most this many cells.
BLOCK_CELLS = 8_000_000
#: Rows of other classes a found pattern is stamped on to test the model.
STAMP_ROWS = 500
#: Stamped rows predicted as the target from this share (and this much above the control) = backdoored.
MIN_ATTACK_SUCCESS = 0.5
MIN_SUCCESS_OVER_CONTROL = 0.3
#: Activation clustering: a cluster below this share of its class is suspect (ART's default).
AC_SIZE_THRESHOLD = 0.35
#: A suspect cluster's trigger transfer (see :func:`_offset_test`) must reach this success rate (and
#: beat its control by :data:`MIN_SUCCESS_OVER_CONTROL`). Measured on digits with a 64-128-10 MLP and
#: a noisy blended trigger, 4 seeds: poisoned clusters 0.75–0.95 against controls 0.01–0.11; clean
#: clusters at most 0.62; clean two-feature tabular data: 0.97–0.99 against controls just as high.
MIN_TRANSFER_SUCCESS = 0.7
#: The representation analysis runs on at most this many rows (evenly spaced).
MAX_REPRESENTATION_ROWS = 20_000


def min_support_for(n_rows: int) -> int:
    """Fewest rows a pattern must mark: 5, or 0.2 % of the rows for big data."""
    return max(5, int(math.ceil(0.002 * n_rows)))


# -- layout ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How a flat row maps back to an image: ``kind`` is ``tabular`` or ``image``.

    ``shape`` is the per-row shape the flat row came from (C-order), ``hw`` the image height and
    width, ``channel_axis`` the position of the channel axis in ``shape`` (``None``: no channels).
    """

    kind: str
    shape: tuple[int, ...] = ()
    hw: tuple[int, int] | None = None
    channel_axis: int | None = None
    text: str = "tabular"

    def pixel(self, feature: int) -> tuple[int, int] | None:
        """(row, column) of a flat feature index in the image (``None`` for tabular data)."""
        if self.kind != "image":
            return None
        pos = list(np.unravel_index(int(feature), self.shape))
        if self.channel_axis is not None:
            pos.pop(self.channel_axis)
        return int(pos[0]), int(pos[1])


def _shape_of(X: Any) -> tuple[int, ...] | None:
    """The shape of numpy arrays and torch tensors, read from the type's own attribute (no user code)."""
    tp = type(X)
    module = getattr(tp, "__module__", "") or ""
    if isinstance(X, np.ndarray) or (module.startswith("torch") and
                                     "Tensor" in {c.__name__ for c in tp.__mro__}):
        try:
            return tuple(int(s) for s in X.shape)
        except (TypeError, ValueError, AttributeError, RuntimeError):
            return None
    return None


#: Names :func:`infer_layout` accepts for ``layout=`` (B19: an ambiguous shape can be overridden).
LAYOUTS = ("nchw", "nhwc", "nhw", "flat-square", "tabular")


def infer_layout(shape: tuple[int, ...] | None, n_features: int, override: str | None = None) -> Layout:
    """Image layout from the input's shape (see the module docstring), else tabular.

    ``override`` (one of :data:`LAYOUTS`) says how to read the shape instead of guessing; a 4-D shape
    whose channel axis could be either (e.g. ``(N, 3, 3, 3)``) is searched as flat features, and the
    layout text says so.
    """
    if override is not None:
        return _forced_layout(shape, n_features, override)
    if shape is not None and len(shape) == 3 and min(shape[1:]) >= 2:
        return _nhw(shape)
    if shape is not None and len(shape) == 4:
        if shape[1] in (1, 3, 4) and min(shape[2:]) > 4:
            return _nchw(shape)
        if shape[3] in (1, 3, 4) and min(shape[1:3]) > 4:
            return _nhwc(shape)
        if shape[1] in (1, 3, 4) or shape[3] in (1, 3, 4):
            return Layout("tabular", (n_features,), None, None,
                          f"tabular: the shape {tuple(shape[1:])} per row could be channels first or last; searched "
                          f"as {n_features} flat features (pass layout='nchw' or 'nhwc' to read it as images)")
    if shape is None or len(shape) <= 2:
        side = int(round(math.sqrt(n_features)))
        if n_features >= 16 and side * side == n_features:
            return _flat_square(side)
    return Layout("tabular", (n_features,), None, None, "tabular")


def _nhw(shape: tuple[int, ...]) -> Layout:
    h, w = shape[1], shape[2]
    return Layout("image", (h, w), (h, w), None, f"{h}×{w} images (N, H, W)")


def _nchw(shape: tuple[int, ...]) -> Layout:
    c, h, w = shape[1:]
    return Layout("image", (c, h, w), (h, w), 0, f"{h}×{w} images, {c} channel(s) first (N, C, H, W)")


def _nhwc(shape: tuple[int, ...]) -> Layout:
    h, w, c = shape[1:]
    return Layout("image", (h, w, c), (h, w), 2, f"{h}×{w} images, {c} channel(s) last (N, H, W, C)")


def _flat_square(side: int) -> Layout:
    n = side * side
    return Layout("image", (side, side), (side, side), None,
                  f"flat rows of {n} read as {side}×{side} images (assumed from the row length)")


def _forced_layout(shape: tuple[int, ...] | None, n_features: int, override: str) -> Layout:
    """The layout the caller asked for, or a ValueError saying why it does not fit the shape."""
    name = str(override).lower()
    dims = {"nchw": 4, "nhwc": 4, "nhw": 3}
    if name == "tabular":
        return Layout("tabular", (n_features,), None, None, "tabular (as requested)")
    if name == "flat-square":
        side = int(round(math.sqrt(n_features)))
        if side * side != n_features:
            raise ValueError(f"layout='flat-square' needs a square number of features; X has {n_features}.")
        return _flat_square(side)
    if name not in dims:
        raise ValueError(f"Unknown layout {override!r}; expected one of {', '.join(LAYOUTS)}.")
    if shape is None or len(shape) != dims[name]:
        raise ValueError(f"layout={name!r} needs a {dims[name]}-D X; X has shape {shape}.")
    return {"nchw": _nchw, "nhwc": _nhwc, "nhw": _nhw}[name](shape)


# -- the data-only search (pure kernels) -------------------------------------------------------------
@dataclass
class Pattern:
    """One suspected trigger: ``features`` set to ``values`` on ``rows`` (local indices) of class ``cls``."""

    cls: int
    features: np.ndarray
    values: np.ndarray
    rows: np.ndarray
    purity: float
    mismatch_rate: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _column_modes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent value of every column and its count (NaN never counts as a mode)."""
    n, d = values.shape
    s = np.array(values.T, order="C")  # (d, n) copy, sorted in place, NaN last
    s.sort(axis=1)
    flat = s.ravel()
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = (s[:, 1:] != s[:, :-1]) | np.isnan(s[:, 1:])
    starts = np.flatnonzero(new.ravel())
    lengths = np.diff(np.append(starts, n * d))
    cols = starts // n
    lengths = np.where(np.isnan(flat[starts]), 0, lengths)
    order = np.lexsort((-lengths, cols))
    first = order[np.r_[True, cols[order][1:] != cols[order][:-1]]]
    mode = np.full(d, np.nan)
    count = np.zeros(d, dtype=np.int64)
    mode[cols[first]] = flat[starts[first]]
    count[cols[first]] = lengths[first]
    return mode, count


def _candidates(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(feature, value) pairs worth testing: the max, min and mode of each column."""
    finite = np.isfinite(values)
    hi = np.where(finite, values, -np.inf).max(axis=0)
    lo = np.where(finite, values, np.inf).min(axis=0)
    mode, _ = _column_modes(values)
    feats = np.concatenate([np.arange(values.shape[1])] * 3)
    vals = np.concatenate([hi, lo, mode])
    keep = np.isfinite(vals)
    feats, vals = feats[keep], vals[keep]
    pairs = np.unique(np.stack([feats.astype(np.float64), vals], axis=1), axis=0)
    return pairs[:, 0].astype(np.int64), pairs[:, 1]


def _indicators(values: np.ndarray, feats: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Boolean (rows, candidates): row carries the candidate's exact value."""
    return values[:, feats] == vals[None, :]


def find_triggers(values: np.ndarray, codes: np.ndarray, *, min_support: int | None = None,
                  budget: Budget | None = None) -> list[Pattern]:
    """Candidate trigger patterns in ``values`` (rows × features, float) with class ``codes`` (-1 = missing).

    Returns patterns sorted by number of carrier rows (largest first), without the confirmation
    vote (see :func:`confirm`). Pure: reads its inputs, allocates its own arrays.
    """
    budget = budget or Budget()
    n, d = values.shape
    min_support = min_support_for(n) if min_support is None else int(min_support)
    valid = codes >= 0
    if n < 2 * min_support or d < 2 or not valid.any():
        return []
    n_classes = int(codes[valid].max()) + 1
    # discover on an evenly spaced subset of big data (deterministic); carriers are counted on all rows
    find = np.arange(n) if n <= DISCOVERY_ROWS else np.linspace(0, n - 1, DISCOVERY_ROWS).astype(np.int64)
    sub, sub_codes = values[find], codes[find]
    sub_support = max(3, int(math.ceil(min_support * len(find) / n)))
    feats, vals = _candidates(sub)
    budget.checkpoint()
    order = np.argsort(sub_codes, kind="stable")
    sorted_values, sorted_codes = sub[order], sub_codes[order]
    bounds = np.searchsorted(sorted_codes, np.arange(-1, n_classes + 1))
    class_n = np.diff(bounds)[1:].astype(np.float64)  # rows per class in the subset
    block = max(1, BLOCK_CELLS // max(len(find), 1))
    per_class = np.zeros((n_classes, len(feats)), dtype=np.float64)
    total = np.zeros(len(feats), dtype=np.float64)
    for start in range(0, len(feats), block):
        ind = _indicators(sorted_values, feats[start:start + block], vals[start:start + block])
        for c in range(n_classes):
            per_class[c, start:start + block] = np.count_nonzero(ind[bounds[c + 1]:bounds[c + 2]], axis=0)
        total[start:start + block] = np.count_nonzero(ind, axis=0)
        budget.checkpoint()
    n_sub = len(find)
    patterns: list[Pattern] = []
    for c in range(n_classes):
        inside = per_class[c]
        outside = total - inside
        n_in, n_out = class_n[c], max(n_sub - class_n[c], 1.0)
        if n_in < sub_support:
            continue
        share_in, share_out = inside / n_in, outside / n_out
        ok = ((inside >= sub_support) & (total <= BACKGROUND_SHARE * n_sub)
              & (share_in >= MIN_LIFT * share_out))
        idx = np.flatnonzero(ok)
        if len(np.unique(feats[idx])) < 2:
            continue
        patterns.extend(_class_patterns(values, codes, c, feats[idx], vals[idx], min_support, find))
        budget.checkpoint()
    patterns.sort(key=lambda p: (-len(p.rows), p.cls, tuple(p.features)))
    return patterns


def _class_patterns(values: np.ndarray, codes: np.ndarray, c: int, feats: np.ndarray, vals: np.ndarray,
                    min_support: int, find: np.ndarray) -> list[Pattern]:
    """Join co-occurring enriched candidates of class ``c`` (in the discovery rows ``find``) into
    patterns and find their carriers among all rows."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    in_c = find[codes[find] == c]
    ind = _indicators(values[in_c], feats, vals).astype(np.float32)
    inter = ind.T @ ind
    size = np.diag(inter)
    union = size[:, None] + size[None, :] - inter
    jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    adj = (jac >= MIN_JACCARD) & (feats[:, None] != feats[None, :])
    n_comp, label = connected_components(csr_matrix(adj), directed=False)
    out = []
    for comp in range(n_comp):
        members = np.flatnonzero(label == comp)
        if len(np.unique(feats[members])) < 2:
            continue
        f, v = feats[members], vals[members]
        need = max(2, int(math.ceil(CARRY_SHARE * len(members))))
        carried = _indicators(values, f, v).sum(axis=1) >= need
        rows = np.flatnonzero(carried & (codes == c))
        n_all = int(carried.sum())
        if len(rows) < min_support or n_all == 0:
            continue
        purity = len(rows) / n_all
        if purity < MIN_PURITY:
            continue
        f, v = _grow(values, rows, f, v)
        order = np.argsort(f, kind="stable")
        out.append(Pattern(c, f[order], v[order], rows, purity))
    return out


def _grow(values: np.ndarray, rows: np.ndarray, feats: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the features on which (almost) every carrier holds one value that is uncommon elsewhere
    (trigger pixels that also occur naturally in the class fail the enrichment test alone)."""
    mode, count = _column_modes(values[rows])
    cand = np.flatnonzero((count >= GROW_CARRIER_SHARE * len(rows)) & np.isfinite(mode))
    cand = cand[~np.isin(cand, feats)]
    others = np.ones(len(values), dtype=bool)
    others[rows] = False
    others = np.flatnonzero(others)
    if len(others) > DISCOVERY_ROWS:
        others = others[np.linspace(0, len(others) - 1, DISCOVERY_ROWS).astype(np.int64)]
    if not len(others) or not len(cand):
        return feats, vals
    share_out = (values[np.ix_(others, cand)] == mode[cand][None, :]).mean(axis=0)
    new = cand[share_out <= GROW_OUTSIDE_SHARE]
    return np.concatenate([feats, new]), np.concatenate([vals, mode[new]])


def confirm(values: np.ndarray, codes: np.ndarray, pattern: Pattern, *, k: int = K_NEIGHBOURS) -> float | None:
    """Share of the pattern's carriers whose k nearest non-carrier rows (pattern features left out,
    standardised) mostly belong to another class; ``None`` when it cannot be measured."""
    keep = np.ones(values.shape[1], dtype=bool)
    keep[pattern.features] = False
    ref = np.ones(len(values), dtype=bool)
    ref[pattern.rows] = False
    ref = np.flatnonzero(ref & (codes >= 0))
    if len(ref) > DISCOVERY_ROWS:  # evenly spaced reference rows: deterministic, no RNG
        ref = ref[np.linspace(0, len(ref) - 1, DISCOVERY_ROWS).astype(np.int64)]
    if not keep.any() or len(ref) < k:
        return None
    query = pattern.rows
    if len(query) > MAX_CONFIRM:  # evenly spaced carriers
        query = query[np.linspace(0, len(query) - 1, MAX_CONFIRM).astype(np.int64)]
    cols = np.flatnonzero(keep)
    R, Q = values[np.ix_(ref, cols)], values[np.ix_(query, cols)]
    finite_r = np.isfinite(R)
    centre = np.where(finite_r, R, 0.0).sum(axis=0) / np.maximum(finite_r.sum(axis=0), 1)
    R = np.where(finite_r, R, centre)  # missing and infinite values count as the column mean
    Q = np.where(np.isfinite(Q), Q, centre)
    scale = R.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    mean = R.mean(axis=0)
    nbr = _nearest((Q - mean) / scale, (R - mean) / scale, k)
    ref_codes = codes[ref[nbr]]
    n_classes = int(codes.max()) + 1
    votes = np.zeros((len(query), n_classes), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(query)), k), ref_codes.ravel()), 1)
    # ties go to the pattern's class (no mismatch)
    own = votes[:, pattern.cls]
    return float(np.mean(votes.max(axis=1) > own))


def _nearest(query: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` nearest ``ref`` rows (Euclidean) of every query row, in blocks."""
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    block = max(1, BLOCK_CELLS // max(len(ref), 1))
    out = np.empty((len(query), k), dtype=np.int64)
    for start in range(0, len(query), block):
        q = query[start:start + block]
        d2 = ref_sq[None, :] - 2.0 * (q @ ref.T)
        out[start:start + block] = np.argpartition(d2, k - 1, axis=1)[:, :k]
    return out


def trigger_mask(layout: Layout, features: np.ndarray) -> list[list[int]] | None:
    """H×W 0/1 picture of the trigger's pixels (``None`` for tabular data)."""
    if layout.kind != "image" or layout.hw is None:
        return None
    mask = np.zeros(layout.hw, dtype=int)
    for f in features:
        r, c = layout.pixel(int(f))
        mask[r, c] = 1
    return mask.tolist()


def _shape_words(layout: Layout, features: np.ndarray) -> tuple[str, dict[str, Any]]:
    """'a 2×2 patch' / 'a 5-pixel pattern' / 'a pattern in 2 features', with the bounding box."""
    if layout.kind != "image":
        return f"a pattern in {plural(len(features), 'feature')}", {}
    pix = np.array([layout.pixel(int(f)) for f in features])
    r0, c0 = pix.min(axis=0)
    r1, c1 = pix.max(axis=0)
    h, w = int(r1 - r0 + 1), int(c1 - c0 + 1)
    n_pix = len({tuple(p) for p in pix.tolist()})
    box = {"trigger_box": [int(r0), int(c0), h, w]}
    if n_pix == h * w:
        return f"a {h}×{w} patch", box
    return f"a {n_pix}-pixel pattern", box


# -- representation kernels (for a model check) --------------------------------------------------------
def spectral_scores(reps: Any, labels: Any) -> np.ndarray:
    """Spectral-signature outlier score of every row (Tran, Li & Madry 2018, Alg. 1).

    Per class: centre the representations R (rows of that class), take v = the top right singular
    vector of the centred matrix (SVD, not the covariance), score τ_i = ((R_i − R̄)·v)². Classes with
    one row score 0. Returns float64 scores, one per row; labels < 0 score 0.
    """
    R = np.asarray(reps, dtype=np.float64)
    R = R.reshape(len(R), -1)
    y = np.asarray(labels).reshape(-1)
    if len(y) != len(R):
        raise ValueError(f"reps has {len(R)} rows but labels has {len(y)}.")
    scores = np.zeros(len(R))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2 or (np.issubdtype(type(c), np.number) and c < 0):
            continue
        centred = R[idx] - R[idx].mean(axis=0)
        scores[idx] = (centred @ _top_right_singular_vector(centred)) ** 2
    return scores


def _top_right_singular_vector(A: np.ndarray) -> np.ndarray:
    """v₁ of ``A`` by Lanczos (ARPACK, fixed start vector), which needs only matrix-vector products:
    a full LAPACK SVD is 100× slower when the machine's cores are busy (multi-threaded OpenBLAS
    waits for them), and checks run next to the user's work. Tiny matrices use the full SVD."""
    if min(A.shape) < 3 or not np.any(A):
        return np.linalg.svd(A, full_matrices=False)[2][0]
    from scipy.sparse.linalg import svds

    m = min(A.shape)
    _, _, vt = svds(A, k=1, v0=np.full(m, 1.0 / math.sqrt(m)))
    return vt[0]


def spectral_suspects(reps: Any, labels: Any, *, eps: float = 0.33, multiplier: float = 1.5) -> np.ndarray:
    """Boolean mask: per class, the top ``multiplier·eps`` fraction of rows by :func:`spectral_scores`
    (ε = upper bound on the poison fraction; ART's defaults are ε = 0.33, multiplier = 1.5)."""
    y = np.asarray(labels).reshape(-1)
    scores = spectral_scores(reps, y)
    flags = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n_remove = min(len(idx), int(math.floor(multiplier * eps * len(idx))))
        if n_remove <= 0:
            continue
        top = idx[np.argsort(-scores[idx], kind="stable")[:n_remove]]
        flags[top] = True
    return flags


def activation_clusters(reps: Any, labels: Any, *, n_dims: int = 10, size_threshold: float = 0.35,
                        seed: int = 0) -> tuple[np.ndarray, dict[Any, dict[str, float]]]:
    """Activation clustering (Chen et al. 2018): per class, reduce to ``n_dims`` with PCA, k-means
    with k = 2, flag the cluster whose relative size is below ``size_threshold`` (ART's
    ``analyze_by_relative_size``). Returns the boolean poison mask and, per class, the smaller
    cluster's relative size and the silhouette score (the paper's second criterion; > 0.1 suggests
    two real clusters). Uses its own seeded RNG only.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    R = np.asarray(reps, dtype=np.float64)
    R = R.reshape(len(R), -1)
    y = np.asarray(labels).reshape(-1)
    flags = np.zeros(len(y), dtype=bool)
    report: dict[Any, dict[str, float]] = {}
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 4:
            continue
        dims = min(n_dims, R.shape[1], len(idx) - 1)
        # ARPACK needs only matrix-vector products (see _top_right_singular_vector); it wants dims < min(n, d).
        solver = "arpack" if dims < min(len(idx), R.shape[1]) else "full"
        Z = (PCA(n_components=dims, svd_solver=solver, random_state=seed).fit_transform(R[idx])
             if dims < R.shape[1] else R[idx])
        km = KMeans(n_clusters=2, n_init=4, random_state=seed).fit(Z)
        sizes = np.bincount(km.labels_, minlength=2) / len(idx)
        small = int(np.argmin(sizes))
        sil = float(silhouette_score(Z, km.labels_)) if len(set(km.labels_.tolist())) == 2 else 0.0
        if sizes[small] < size_threshold:
            flags[idx[km.labels_ == small]] = True
        key = c.item() if isinstance(c, np.generic) else c
        report[key] = {"smaller_cluster_share": float(sizes[small]), "silhouette": sil}
    return flags, report


# -- with the fitted model ----------------------------------------------------------------------------
def _guarded(test: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a model test; a model that refuses our rows gives an error note, not a failed check."""
    try:
        return test()
    except (CheckCancelled, CheckTimeout):
        raise
    except Exception as exc:
        return {"stamp_test_error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def _transfer_rates(probe: ModelProbe, base: np.ndarray, target: Any, stamp: Callable[[np.ndarray], np.ndarray],
                    controls: list[Callable[[np.ndarray], np.ndarray]], budget: Budget) -> dict[str, Any]:
    """Share of ``base`` rows (not already predicted ``target``) that ``stamp`` turns into ``target``,
    and the mean share for the ``controls`` (the same change put on random features)."""
    base = base[probe.predict(base, budget) != target]
    if not len(base):
        return {}
    success = float(np.mean(probe.predict(stamp(base.copy()), budget) == target))
    control = float(np.mean([np.mean(probe.predict(c(base.copy()), budget) == target) for c in controls]))
    return {"attack_success_rate": round(success, 4), "control_success_rate": round(control, 4),
            "stamped_rows": int(len(base)), "model_target": _label_text(target)}


def _other_rows(values: np.ndarray, codes: np.ndarray, cls: int, exclude: np.ndarray, budget: Budget) -> np.ndarray:
    """Up to :data:`STAMP_ROWS` complete rows of classes other than ``cls`` (not in ``exclude``)."""
    others = np.flatnonzero(~np.isnan(values).any(axis=1) & (codes >= 0) & (codes != cls))
    others = np.setdiff1d(others, exclude)
    if len(others) > STAMP_ROWS:
        others = np.sort(budget.rng().choice(others, STAMP_ROWS, replace=False))
    return values[others]


def _stamp_test(probe: ModelProbe, table: Table, codes: np.ndarray, p: Pattern, budget: Budget) -> dict[str, Any]:
    """Stamp a found pattern on rows of other classes (Gu et al.'s test); the target is the model's
    most common prediction on the carriers; the control stamps the same values on random features."""
    def test() -> dict[str, Any]:
        values = table.values
        carriers = values[p.rows[~np.isnan(values[p.rows]).any(axis=1)]]
        target = _mode(probe.predict(carriers, budget))
        base = _other_rows(values, codes, p.cls, p.rows, budget)
        if target is None or not len(base):
            return {}
        spare = np.setdiff1d(np.arange(values.shape[1]), p.features)
        rng = budget.rng()

        def put(features: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            def apply(rows: np.ndarray) -> np.ndarray:
                rows[:, features] = p.values[: len(features)]
                return rows
            return apply

        controls = [put(rng.choice(spare, min(len(spare), len(p.features)), replace=False)) for _ in range(3)]
        return _transfer_rates(probe, base, target, put(p.features), controls, budget)

    return _guarded(test)


def _offset_test(probe: ModelProbe, values: np.ndarray, codes: np.ndarray, logits: np.ndarray,
                 cluster: np.ndarray, cls: int, budget: Budget) -> dict[str, Any]:
    """Trigger transfer for a suspect cluster of class ``cls`` (rows ``cluster`` of ``values``).

    The estimated trigger is the cluster's mean offset from the classes the model ranks second on
    its rows, δ = mean_i (x_i − μ_{runner-up(i)}). Added to rows of other classes (clipped to the
    data's range), a learned trigger sends them to ``cls``. In the spirit of Neural Cleanse (Wang et
    al., IEEE S&P 2019: a backdoor target is reachable from every class by one small perturbation),
    with the perturbation read off the data instead of optimised.

    The control is the same offset computed for random rows of the class outside the cluster (as many,
    three draws), scaled to the norm of δ: on any data a class's offset from its neighbours is partly
    the decision direction, and a cluster of the class's most typical rows (far from the boundary) has
    a long one that moves almost every row to the class (clean tabular data: 97 %). Pushed as far, the
    control moves as many; a trigger moves rows much further than the class direction does at the same
    size. Thresholds: :data:`MIN_TRANSFER_SUCCESS` and :data:`MIN_SUCCESS_OVER_CONTROL`.
    """
    def offset(rows: np.ndarray) -> np.ndarray:
        masked = logits[rows].copy()
        masked[:, cls] = -np.inf
        runner_up = masked.argmax(axis=1)
        means = {int(k): values[codes == k].mean(axis=0) for k in np.unique(runner_up)}
        return (values[rows] - np.stack([means[int(k)] for k in runner_up])).mean(axis=0)

    def test() -> dict[str, Any]:
        rest = np.setdiff1d(np.flatnonzero(codes == cls), cluster)
        base = _other_rows(values, codes, cls, cluster, budget)
        if not len(base) or len(rest) < len(cluster):
            return {}
        rng = budget.rng()
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)

        def add(delta: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            return lambda rows: np.clip(rows + delta, low, high)

        delta = offset(cluster)
        norm = float(np.linalg.norm(delta))
        controls = []
        for _ in range(3):
            other = offset(rng.choice(rest, len(cluster), replace=False))
            size = float(np.linalg.norm(other))
            controls.append(add(other * (norm / size) if size > 0 else other))
        rates = _transfer_rates(probe, base, cls, add(delta), controls, budget)
        return dict(rates, trigger_offset_norm=round(float(np.linalg.norm(delta)), 4)) if rates else {}

    return _guarded(test)


def _mode(pred: np.ndarray) -> Any:
    if not len(pred):
        return None
    values, counts = np.unique(pred, return_counts=True)
    return values[int(np.argmax(counts))]


def _label_text(value: Any) -> str:
    return str(value.item() if isinstance(value, np.generic) else value)


def backdoored(extra: dict[str, Any], min_success: float = MIN_ATTACK_SUCCESS,
               over_control: float = MIN_SUCCESS_OVER_CONTROL) -> bool:
    """Whether a stamp or transfer test says the trigger works on the model."""
    success, control = extra.get("attack_success_rate"), extra.get("control_success_rate")
    return (success is not None and success >= min_success
            and success - (control or 0.0) >= over_control)


def _representation_findings(probe: ModelProbe, table: Table, labels: Labels, confirmed: list[Pattern],
                             base: dict, budget: Budget) -> list[Finding]:
    """Activation clustering on the model's penultimate layer, each suspect cluster verified by the
    trigger-transfer test (:func:`_offset_test`); spectral signatures are reported alongside."""
    local = np.flatnonzero(labels.codes >= 0)
    local = local[~np.isnan(table.values[local]).any(axis=1)]
    if len(local) > MAX_REPRESENTATION_ROWS:
        local = local[np.linspace(0, len(local) - 1, MAX_REPRESENTATION_ROWS).astype(np.int64)]
    values, codes = table.values[local], labels.codes[local]
    try:
        reps, logits = probe.outputs(values, budget, representation=True)
    except (CheckCancelled, CheckTimeout):
        raise
    except Exception as exc:
        base["notes"] = [*base.get("notes", []), f"the model could not be run on the training rows "
                         f"({type(exc).__name__}: {str(exc)[:200]}), so its representation was not read"]
        return []
    if reps is None or logits.shape[1] != labels.n_classes:
        return []  # outputs that are not one score per class cannot be tied to the labels
    budget.checkpoint()
    flags, report = activation_clusters(reps, codes, size_threshold=AC_SIZE_THRESHOLD)
    spectral = spectral_scores(reps, codes)
    findings = []
    for c, stats in report.items():
        cluster = np.flatnonzero(flags & (codes == c))
        if not len(cluster) or any(p.cls == c for p in confirmed):
            continue
        budget.checkpoint()
        stats.update(_offset_test(probe, values, codes, logits, cluster, int(c), budget))
        if backdoored(stats, MIN_TRANSFER_SUCCESS):
            stats["spectral_agreement"] = _spectral_agreement(spectral, codes, flags, int(c))
            findings.append(_representation_finding(table, labels, int(c), local[cluster], stats, base))
    return findings[:3]


def _spectral_agreement(scores: np.ndarray, codes: np.ndarray, flags: np.ndarray, c: int) -> float:
    """Share of the suspect cluster among the class's top rows by spectral score (as many rows)."""
    idx = np.flatnonzero(codes == c)
    cluster = flags[idx]
    top = np.argsort(-scores[idx], kind="stable")[: int(cluster.sum())]
    return round(float(cluster[top].mean()) if len(top) else 0.0, 4)


def _representation_finding(table: Table, labels: Labels, c: int, rows: np.ndarray, stats: dict,
                            base: dict) -> Finding:
    name = labels.classes[c]
    rate = len(rows) / table.n_rows
    metrics = dict(base, suspect_rate=rate, target_class=name, n_suspects=len(rows), source="model representation",
                   smaller_cluster_share=round(stats["smaller_cluster_share"], 4),
                   silhouette=round(stats["silhouette"], 4),
                   **{k: stats[k] for k in ("attack_success_rate", "control_success_rate", "stamped_rows",
                                            "trigger_offset_norm", "spectral_agreement")})
    summary = (f"In the model's penultimate layer, {plural(len(rows), 'row')} of class '{name}' "
               f"({100 * stats['smaller_cluster_share']:.0f}% of the class) form a cluster of their own. Their mean "
               f"offset from the classes the model ranks second on them, added to "
               f"{plural(stats['stamped_rows'], 'row')} of other classes, turns "
               f"{100 * stats['attack_success_rate']:.0f}% of predictions into '{name}' (an offset as large taken from as "
               f"many other rows of '{name}': {100 * stats['control_success_rate']:.0f}%): the model answers '{name}' to a "
               f"shared pattern on these rows — a backdoor whose trigger is not an exact constant (e.g. a blended "
               f"pattern). Spectral signatures agree on {100 * stats['spectral_agreement']:.0f}% of the rows.")
    advice = (f"Look at a few of these rows for a shared pattern, remove them (or restore their labels) and "
              f"retrain; then re-run this check on the new model. Audit where the '{name}' labels came from.")
    return Finding(CHECK, Severity.HIGH, f"Backdoor in the model: a cluster of class '{name}' carries a trigger",
                   summary, metrics=metrics, indices=table.positions(rows), recommendation=advice)


# -- the check -----------------------------------------------------------------------------------------
def _empty_metrics() -> dict[str, Any]:
    return {"suspect_rate": None, "target_class": None}


def _skipped(title: str, message: str, severity: str = "info") -> Finding:
    return Finding(CHECK, Severity.parse(severity), title, message, metrics=_empty_metrics(),
                   recommendation="Pass numeric features (a 2-D array, DataFrame, tensor or image array) "
                                  "with one class label per row to run this check.")


@register_check(CHECK, applies_to="dataset", title="Backdoor triggers", requires=(), cost="fast")
def backdoor(*, X: Any, y: Any = None, feature_names: Any = None, model: Any = None,
             layout: str | None = None, budget: Budget) -> list[Finding]:
    """Search the labelled training data for a BadNets-style trigger and, with the ``model`` fitted on
    it, test the trigger on the model and read its representation (see the module docstring).
    ``layout`` (one of :data:`LAYOUTS`) overrides how the shape of X is read as images."""
    if y is None:
        return [_skipped("Backdoor search needs labels",
                         "No labels (y) were given: a backdoor ties a pattern to a target class, so the "
                         "search needs one class label per row.")]
    try:
        table = prepare_features(X, budget, feature_names, allow_nd=True, y=y)
    except UnsupportedData as exc:
        return [_skipped("Backdoor search not run", exc.message, "info")]
    try:
        labels = labels_for(y, table, budget)
    except UnsupportedData as exc:
        return [_skipped("Backdoor search not run", f"labels not usable: {exc.message}; the search needs "
                         "one class label per row.", "low")]
    if labels.target_type in ("continuous", "unknown") or labels.n_classes < 2:
        why = "continuous (a regression target)" if labels.target_type == "continuous" else "a single class"
        return [_skipped("Backdoor search not run",
                         f"y is {why}; a backdoor ties a pattern to one of several classes, so there is "
                         f"nothing to search.")]
    budget.checkpoint()
    layout = infer_layout(_shape_of(X), table.n_features, layout)
    values, cols = _search_values(table)
    notes = list(table.notes)
    if len(cols) < table.n_features:
        notes.append(f"searched the {len(cols):,} most varied of {table.n_features:,} features")
    patterns = find_triggers(values, labels.codes, budget=budget)
    budget.checkpoint()
    confirmed, seen = [], []
    for p in patterns[:10]:
        p.mismatch_rate = confirm(values, labels.codes, p)
        p.features = cols[p.features]
        (confirmed if (p.mismatch_rate or 0.0) >= MIN_MISMATCH else seen).append(p)
        budget.checkpoint()
    confirmed = _disjoint(confirmed)[:3]
    base = {"n_rows": table.n_rows_total, "layout": layout.text, "min_support": min_support_for(table.n_rows)}
    if table.sampled:
        base.update(sampled_rows=table.n_rows, total_rows=table.n_rows_total)
    probe = None
    if model is not None:
        probe, why_not = probe_for(model, X, all(k in ("numeric", "bool") for k in table.column_kinds))
        if probe is None:
            notes.append(f"the model was not probed: {why_not}")
    if notes:
        base["notes"] = notes
    if probe is not None:
        for p in confirmed:
            p.extra.update(_stamp_test(probe, table, labels.codes, p, budget))
    findings = ([_pattern_finding(table, labels, layout, p, base) for p in confirmed] if confirmed
                else [_clean_finding(table, labels, layout, seen, base)])
    if probe is not None and probe.has_representation:
        findings.extend(_representation_findings(probe, table, labels, confirmed, base, budget))
    return findings


def _search_values(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """The readable columns to search (at most :data:`MAX_FEATURES`, the most varied) and their indices."""
    cols = np.flatnonzero(table.readable)
    values = table.values if len(cols) == table.n_features else table.values[:, cols]
    if len(cols) > MAX_FEATURES:
        with np.errstate(all="ignore"):
            spread = np.nan_to_num(np.nanstd(values, axis=0))
        top = np.sort(np.argsort(-spread, kind="stable")[:MAX_FEATURES])
        cols, values = cols[top], values[:, top]
    return values, cols


def _disjoint(patterns: list[Pattern]) -> list[Pattern]:
    """Drop patterns whose carriers mostly repeat a larger pattern's carriers."""
    out: list[Pattern] = []
    for p in patterns:
        if all(len(np.intersect1d(p.rows, q.rows)) < 0.5 * len(p.rows) for q in out):
            out.append(p)
    return out


def _value_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"


def _pattern_finding(table: Table, labels: Labels, layout: Layout, p: Pattern, base: dict) -> Finding:
    n = table.n_rows
    rate = len(p.rows) / n
    cls_name = labels.classes[p.cls]
    shape, box = _shape_words(layout, p.features)
    uniq_vals = np.unique(p.values)
    value = float(uniq_vals[0]) if len(uniq_vals) == 1 else [float(v) for v in p.values]
    metrics = dict(base, suspect_rate=rate, target_class=cls_name, n_suspects=len(p.rows),
                   trigger_features=[int(f) for f in p.features],
                   trigger_feature_names=[table.columns[int(f)] for f in p.features],
                   trigger_value=value, purity=round(p.purity, 4),
                   mismatch_rate=None if p.mismatch_rate is None else round(p.mismatch_rate, 4))
    metrics.update(box)
    mask = trigger_mask(layout, p.features)
    if mask is not None:
        metrics["trigger_mask"] = mask
    metrics.update(p.extra)
    sev = Severity.HIGH if rate >= HIGH_SHARE else Severity.MEDIUM
    works = backdoored(p.extra)
    if works:
        sev = Severity.CRITICAL
    where = (f"at pixels {', '.join(str(layout.pixel(int(f))) for f in p.features[:8])}"
             + (" …" if len(p.features) > 8 else "") if layout.kind == "image"
             else "in " + ", ".join(f"'{table.columns[int(f)]}'" for f in p.features[:8]))
    vals = (f"value {_value_text(uniq_vals[0])}" if len(uniq_vals) == 1
            else "values " + ", ".join(_value_text(v) for v in p.values[:8]))
    title = f"Possible backdoor trigger: {plural(len(p.rows), 'row')} of class '{cls_name}' share {shape}"
    summary = (f"{plural(len(p.rows), 'row')} ({100 * rate:.1f}%) labelled '{cls_name}' carry the same {vals} "
               f"{where}; {100 * p.purity:.0f}% of all rows with this pattern are in class '{cls_name}', and "
               f"{100 * (p.mismatch_rate or 0):.0f}% of them look like other classes once the pattern is "
               f"ignored — the signature of BadNets-style poisoning (a stamped trigger relabelled to a target "
               f"class). Layout: {layout.text}. Indices are the suspected poisoned rows.")
    summary += _stamp_sentence(p.extra, cls_name)
    if table.sampled:
        summary += f" Searched a random sample of {table.n_rows:,} of {table.n_rows_total:,} rows."
    if works:
        title = f"Backdoored model: {shape} on a row turns its prediction into '{cls_name}'"
    advice = (f"Remove these rows (or restore their true labels), retrain, and trace where they came from "
              f"(data source, annotator, augmentation code). Test the model already trained on this data: "
              f"stamp the pattern on held-out rows of other classes — if predictions jump to '{cls_name}', "
              f"the model is backdoored and must be retrained from cleaned data.")
    if works:
        advice = ("Do not deploy this model: the trigger controls it. Remove these rows (or restore their true "
                  "labels), retrain from the cleaned data, and re-run this check on the new model; trace where "
                  "the rows came from (data source, annotator, augmentation code).")
    return Finding(CHECK, sev, title, summary, metrics=metrics, indices=table.positions(p.rows),
                   recommendation=advice)


def _stamp_sentence(extra: dict[str, Any], cls_name: str) -> str:
    if "stamp_test_error" in extra:
        return f" The pattern could not be tested on the model ({extra['stamp_test_error']})."
    if "attack_success_rate" not in extra:
        return ""
    return (f" Tested on the fitted model: stamped on {plural(extra['stamped_rows'], 'row')} of other classes, "
            f"the pattern turns {100 * extra['attack_success_rate']:.0f}% of predictions into the model's "
            f"prediction for the carriers ('{extra['model_target']}'), against "
            f"{100 * extra['control_success_rate']:.0f}% for the same values on random features"
            + (" — the model has learned the trigger." if backdoored(extra) else "."))


def _clean_finding(table: Table, labels: Labels, layout: Layout, seen: list[Pattern], base: dict) -> Finding:
    metrics = dict(base, suspect_rate=0.0, target_class=None, n_suspects=0, patterns_seen=len(seen))
    summary = (f"{plural(table.n_rows_total, 'row')} × {plural(table.n_features, 'feature')} in "
               f"{plural(labels.n_classes, 'class', 'classes')} searched (layout: {layout.text}): no small "
               f"constant pattern marks a subset of one class while being rare elsewhere.")
    if seen:
        p = seen[0]
        summary += (f" {plural(len(seen), 'class-specific constant pattern')} "
                    f"({plural(len(p.rows), 'row')} of class '{labels.classes[p.cls]}' share exact values in "
                    f"{plural(len(p.features), 'feature')}) {'was' if len(seen) == 1 else 'were'} seen, but those "
                    f"rows look like their own class, as a legitimate shortcut (e.g. zeros coding 'not measured') "
                    f"does; not flagged. A clean-label backdoor would look the same.")
    if table.sampled:
        summary += f" Searched a random sample of {table.n_rows:,} of {table.n_rows_total:,} rows."
    if base.get("notes"):
        summary += " Note: " + "; ".join(base["notes"]) + "."
    return Finding(CHECK, Severity.INFO, "No backdoor trigger found", summary, metrics=metrics)
