"""``data.label_flips``: labels that disagree with what the features say (label errors, flipping attacks).

Method (classification labels only):

1. **Features** are put in one scaled space: unreadable columns are dropped, missing values take the
   column median, constant columns are dropped and every column is standardised.
2. **Out-of-fold class probabilities** on stratified cross-validation folds. Two closed-form
   candidates are fitted: linear discriminant analysis with Ledoit-Wolf shrinkage (a linear model,
   the same as scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``) and
   regularised quadratic discriminant analysis (a nonlinear one, as ``QuadraticDiscriminantAnalysis
   (reg_param=0.1)``, used only when every class has enough rows per feature); the one with the lower
   out-of-fold log loss against the given labels is kept. Under uniformly flipped labels the better
   model of the noisy labels is also the better model of the true ones, so this choice needs no clean
   data. Both are computed from per-fold, per-class moment sums (each fold's training statistics are
   the totals minus its own), so all folds of both models cost about one pass over the data.
3. **Neighbour consistency**: the class shares among the ``k`` nearest neighbours of every row
   (leave-one-out; the row itself never votes), as in Wilson's edited nearest neighbour rule. Above
   ``KNN_REFERENCE`` rows the neighbours come from a content-hash sample of that many rows.
4. The two probability vectors are averaged. Following confident learning, a per-class threshold is
   the mean probability that rows labelled ``c`` get for ``c``; a row counts as a likely flip when
   another class clears its threshold and is the most probable such class (the off-diagonal of the
   "confident joint"). That count estimates how many labels are flipped; the flagged rows are that
   many rows with the highest score ``(1 - margin) / 2``, where ``margin`` is the probability of the
   given label minus the largest probability of any other class.

Folds are assigned from a hash of each row's content (not its position or a random state), so the
result follows a joint permutation of rows, does not depend on how classes are named, and never
touches a random number generator.

References
----------
* C. G. Northcutt, L. Jiang, I. L. Chuang. "Confident Learning: Estimating Uncertainty in Dataset
  Labels." Journal of Artificial Intelligence Research 70 (2021) 1373-1411.
* D. L. Wilson. "Asymptotic Properties of Nearest Neighbor Rules Using Edited Data." IEEE Transactions
  on Systems, Man, and Cybernetics SMC-2(3) (1972) 408-421.
* C. E. Brodley, M. A. Friedl. "Identifying Mislabeled Training Data." JAIR 11 (1999) 131-167.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._intervals import proportion_ci
from .._tabular import Labels, Table, UnsupportedData, plural, prepare_features, labels_for
from ..budget import Budget
from ..registry import register_check
from .duplicates import content_hashes

CHECK = "data.label_flips"
#: Every class needs at least this many labelled rows (one per cross-validation fold).
MIN_PER_CLASS = 5
#: Cross-validation folds (fewer only if ``MIN_PER_CLASS`` is lowered).
FOLDS = 5
#: Neighbours that vote on each row's label.
NEIGHBOURS = 20
#: Above this many rows the neighbour vote searches a reference sample of this size (see
#: :func:`_neighbour_probabilities`).
KNN_REFERENCE = 5_000
#: Rows looked at; bigger data is sampled (the kNN step is quadratic in rows).
MAX_ROWS = 50_000
#: QDA is a candidate only when each class has this many rows per feature.
QDA_ROWS_PER_FEATURE = 5
QDA_REG = 0.1
#: Severity from the estimated flip rate. Clean benchmark data (iris, wine, breast cancer, digits)
#: gives 0-4 %: classes that genuinely overlap look like flips. Only rates well above that are
#: medium, and 10 % (a typical label-flipping attack or a badly labelled source) is high.
MEDIUM_RATE, HIGH_RATE = 0.05, 0.08
#: Below this estimated rate the finding is info: clean data with overlapping classes gets there.
LOW_RATE = 0.01
#: Rows listed in ``metrics["top_rows"]`` and class pairs in ``metrics["class_pairs"]``.
TOP_ROWS, TOP_PAIRS = 10, 5
_CLEAN_METRICS = {"estimated_flip_rate": None, "n_flagged": None}


@dataclasses.dataclass
class FlipScores:
    """What :func:`flip_scores` found, in the local row order of its input."""

    score: np.ndarray       # (n,) in [0, 1]; higher = more likely flipped
    suggested: np.ndarray   # (n,) most probable other class code
    flagged: np.ndarray     # local indices, most suspicious first
    model: str
    folds: int
    neighbours: int


# -- the pure kernel --------------------------------------------------------------------------------
def scaled_features(values: np.ndarray) -> np.ndarray:
    """Median-imputed, standardised float64 copy of ``values``, constant columns dropped."""
    Z = np.array(values, dtype=np.float64)  # the only full-size array made here (issue 9: memory)
    bad = ~np.isfinite(Z)
    if bad.any():
        has = ~bad.all(axis=0)  # all-missing columns keep 0 (and nanmedian never warns: no catch_warnings,
        med = np.zeros(Z.shape[1])  # which is not thread-safe)
        med[has] = np.nanmedian(np.where(bad[:, has], np.nan, Z[:, has]), axis=0)
        Z[bad] = np.take(med, np.nonzero(bad)[1])
    del bad
    mean = Z.mean(axis=0)
    Z -= mean
    std = np.sqrt(np.einsum("ij,ij->j", Z, Z) / max(len(Z), 1))
    keep = std > 1e-12 * np.maximum(1.0, np.abs(mean))
    if not keep.all():
        Z = Z[:, keep]
    Z /= std[keep]
    return Z


def content_folds(keys: np.ndarray, codes: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds keyed by ``keys`` (a hash of each row's content): free of positions and class names."""
    order = np.argsort(keys, kind="stable")
    fold = np.empty(len(codes), dtype=np.int64)
    for c in np.unique(codes):
        members = order[codes[order] == c]
        fold[members] = np.arange(len(members)) % n_folds
    idx = np.arange(len(codes))
    return [(idx[fold != f], idx[fold == f]) for f in range(n_folds)]


def _clean_probabilities(P: np.ndarray, n_classes: int) -> np.ndarray:
    P = np.nan_to_num(P, nan=1.0 / n_classes)
    return P / np.clip(P.sum(axis=1, keepdims=True), 1e-12, None)


def _log_loss(P: np.ndarray, codes: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(P[np.arange(len(codes)), codes], 1e-3, 1.0))))


def _fold_moments(Z: np.ndarray, codes: np.ndarray, folds: list, n_classes: int, fourth: bool) -> list:
    """Per held-out fold and class: row count, sum, sum of squares, ``X'X`` and (if ``fourth``) the
    moments ``(X**2)'X`` and ``(X**2)'(X**2)`` that Ledoit-Wolf shrinkage needs."""
    out = []
    for _, test in folds:
        per_class = []
        for c in range(n_classes):
            Zc = Z[test[codes[test] == c]]
            Z2 = Zc * Zc
            per_class.append([float(len(Zc)), Zc.sum(axis=0), Z2.sum(axis=0), Zc.T @ Zc,
                              Z2.T @ Zc if fourth else None, Z2.T @ Z2 if fourth else None])
        out.append(per_class)
    return out


def _training_moments(moments: list, fold: int, c: int) -> list:
    """The moments of class ``c`` over every fold but ``fold`` (whole-data sums minus the held-out ones)."""
    total = [sum(m[c][i] for m in moments) if moments[0][c][i] is not None else None for i in range(6)]
    return [t - h if t is not None else None for t, h in zip(total, moments[fold][c])]


def _softmax_rows(log_post: np.ndarray) -> np.ndarray:
    log_post = log_post - log_post.max(axis=1, keepdims=True)
    e = np.exp(log_post)
    return e / e.sum(axis=1, keepdims=True)


def _lda_oof(Z: np.ndarray, codes: np.ndarray, folds: list, n_classes: int) -> np.ndarray:
    """Out-of-fold probabilities of LDA with Ledoit-Wolf shrinkage, in closed form.

    The same model as scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")``
    (each class's covariance shrunk by Ledoit-Wolf on its standardised rows, weighted by the class
    prior), computed from per-fold moment sums, so the folds share one pass over the data.
    """
    n, p = Z.shape
    P = np.empty((n, n_classes))
    moments = _fold_moments(Z, codes, folds, n_classes, fourth=True)
    eye = np.eye(p)
    for f, (_, test) in enumerate(folds):
        stats = [_training_moments(moments, f, c) for c in range(n_classes)]
        n_c = np.array([st[0] for st in stats])
        priors = n_c / n_c.sum()
        means = np.array([st[1] / st[0] for st in stats])
        cov = np.zeros((p, p))
        for c, (m_n, s1, s2, C, B, A) in enumerate(stats):
            m = means[c]
            Cc = C - m_n * np.outer(m, m)
            sd = np.sqrt(np.clip(np.diag(Cc) / m_n, 0.0, None))
            sd = np.where(sd > 1e-6 * np.maximum(1.0, np.abs(m)), sd, 1.0)  # constant in the class: as sklearn
            outer_sd = np.outer(sd, sd)
            YtY = Cc / outer_sd
            mm = np.outer(m, m)
            fourth = (A - 2.0 * B * m[None, :] - 2.0 * B.T * m[:, None] + np.outer(s2, m * m) + np.outer(m * m, s2)
                      + 4.0 * mm * C - 2.0 * np.outer(s1 * m, m * m) - 2.0 * np.outer(m * m, s1 * m)
                      + m_n * mm * mm) / (outer_sd * outer_sd)
            emp = YtY / m_n
            mu = np.trace(emp) / p
            delta_ = np.sum(YtY ** 2) / m_n ** 2
            beta = (np.sum(fourth) / m_n - delta_) / (p * m_n)
            delta = (delta_ - 2.0 * mu * np.trace(emp) + p * mu ** 2) / p
            beta = min(beta, delta)
            shrink = 0.0 if beta == 0 else beta / delta
            cov += priors[c] * outer_sd * ((1.0 - shrink) * emp + shrink * mu * eye)
        coef = np.linalg.lstsq(cov, means.T, rcond=None)[0].T
        intercept = -0.5 * np.einsum("ij,ij->i", means, coef) + np.log(priors)
        P[test] = _softmax_rows(Z[test] @ coef.T + intercept)
    return P


def _qda_oof(Z: np.ndarray, codes: np.ndarray, folds: list, n_classes: int) -> np.ndarray:
    """Out-of-fold probabilities of regularised QDA (as scikit-learn's ``reg_param``), in closed form.

    Each class's covariance ``C`` becomes ``(1 - QDA_REG) C + QDA_REG I``; the per-fold training statistics
    are the whole-data sums minus the held-out fold's, so the folds share one pass over the data.
    """
    n, p = Z.shape
    P = np.empty((n, n_classes))
    moments = _fold_moments(Z, codes, folds, n_classes, fourth=False)
    eye = np.eye(p)
    for f, (_, test) in enumerate(folds):
        stats = [_training_moments(moments, f, c) for c in range(n_classes)]
        n_c = np.array([st[0] for st in stats])
        log_post = np.empty((len(test), n_classes))
        for c, (m_n, s1, _, C, _, _) in enumerate(stats):
            mean = s1 / m_n
            cov = (C - m_n * np.outer(mean, mean)) / max(m_n - 1.0, 1.0)
            L = np.linalg.cholesky((1.0 - QDA_REG) * (cov + cov.T) / 2.0 + QDA_REG * eye)
            d = np.linalg.solve(L, (Z[test] - mean).T)
            log_post[:, c] = (-0.5 * np.einsum("ij,ij->j", d, d) - np.log(np.diag(L)).sum()
                              + np.log(m_n / n_c.sum()))
        P[test] = _softmax_rows(log_post)
    return P


def _model_probabilities(Z: np.ndarray, codes: np.ndarray, n_classes: int, folds: list,
                         budget: Budget) -> tuple[np.ndarray, str]:
    """Out-of-fold probabilities of the better (log loss) of shrinkage LDA and regularised QDA."""
    P = _clean_probabilities(_lda_oof(Z, codes, folds, n_classes), n_classes)
    best = (_log_loss(P, codes), P, "linear discriminant analysis (shrinkage)")
    budget.checkpoint()
    smallest = int(np.bincount(codes, minlength=n_classes).min())
    if smallest * (len(folds) - 1) / len(folds) >= QDA_ROWS_PER_FEATURE * Z.shape[1]:
        P = _clean_probabilities(_qda_oof(Z, codes, folds, n_classes), n_classes)
        loss = _log_loss(P, codes)
        if loss < best[0]:
            best = (loss, P, f"quadratic discriminant analysis (reg {QDA_REG:g})")
        budget.checkpoint()
    return best[1], best[2]


def _neighbour_probabilities(Z: np.ndarray, codes: np.ndarray, n_classes: int, k: int,
                             keys: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out class shares among each row's ``k`` nearest neighbours (Euclidean, scaled space).

    Neighbours tied with the ``k``-th distance share its remaining votes equally, and distances are
    rounded, so which of several equally near rows comes first (their position) changes nothing. With
    more than ``KNN_REFERENCE`` rows (and ``keys``), the neighbours are searched among the
    ``KNN_REFERENCE`` rows with the smallest content hash (a reproducible random sample of the data,
    free of row positions and class names): the vote is a little coarser, at a fraction of the cost
    (on make_classification 20000×40 the search is four times cheaper and F1 drops from 0.85 to 0.84).
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(codes)
    if keys is not None and n > KNN_REFERENCE:
        ref = np.sort(np.argsort(keys, kind="stable")[:KNN_REFERENCE])
    else:
        ref = np.arange(n)
    extra = min(len(ref) - 1, k + max(5, k // 2))
    if len(ref) == n:
        dist, ind = NearestNeighbors(n_neighbors=extra, algorithm="brute").fit(Z).kneighbors()
    else:  # query every row against the reference; drop the row itself when it is in the reference
        dist, ind = NearestNeighbors(n_neighbors=extra + 1, algorithm="brute").fit(Z[ref]).kneighbors(Z)
        ind = ref[ind]
        own = ind == np.arange(n)[:, None]
        own[:, -1] |= ~own.any(axis=1)  # rows outside the reference drop their farthest candidate
        keep = ~own
        dist = dist[keep].reshape(n, extra)
        ind = ind[keep].reshape(n, extra)
    scale = max(float(np.median(dist[:, k - 1])), 1e-12)
    dist = np.round(dist / scale, 6)
    kth = dist[:, k - 1:k]
    closer = dist < kth
    tied = dist == kth
    n_closer = closer.sum(axis=1, keepdims=True)
    weight = closer + tied * (k - n_closer) / np.maximum(tied.sum(axis=1, keepdims=True), 1)
    P = np.zeros((n, n_classes))
    rows = np.arange(n)
    for j in range(extra):
        np.add.at(P, (rows, codes[ind[:, j]]), weight[:, j])
    return P / k


def flip_scores(Z: np.ndarray, codes: np.ndarray, n_classes: int, budget: Budget,
                keys: np.ndarray | None = None) -> FlipScores:
    """Score every row of ``Z`` (scaled features) with labels ``codes`` (0..n_classes-1, all valid).

    ``keys`` are content hashes of the rows (default: of ``Z``); hash the unscaled values so that
    rounding in the scaling cannot change them when rows are reordered.
    """
    n = len(codes)
    keys = content_hashes(Z) if keys is None else keys
    per_class = np.bincount(codes, minlength=n_classes)
    folds = content_folds(keys, codes, min(FOLDS, int(per_class.min())))
    budget.checkpoint()
    if Z.shape[1] == 0:
        P_model, model = np.tile(per_class / n, (n, 1)), "class prior (no usable feature)"
    else:
        P_model, model = _model_probabilities(Z, codes, n_classes, folds, budget)
    k = min(NEIGHBOURS, n - 1)
    P_knn = _neighbour_probabilities(Z, codes, n_classes, k, keys)
    budget.checkpoint()
    P = np.round((P_model + P_knn) / 2.0, 10)  # rounding: summation-order noise cannot move a decision
    rows = np.arange(n)
    given = P[rows, codes]
    other = P.copy()
    other[rows, codes] = -1.0
    suggested = np.argmax(other, axis=1)
    margin = given - other[rows, suggested]
    score = np.clip((1.0 - margin) / 2.0, 0.0, 1.0)
    # confident joint (Northcutt et al. 2021): per-class threshold = mean self-confidence of the class
    thresholds = np.array([P[codes == c, c].mean() for c in range(n_classes)])
    above = np.where(P >= thresholds[None, :], P, -1.0)
    confident = np.argmax(above, axis=1)
    counted = above.max(axis=1) >= 0
    off_diagonal = counted & (confident != codes)
    # calibrated like the confident joint: each given class's off-diagonal share times its row count
    share = (np.bincount(codes[off_diagonal], minlength=n_classes)
             / np.maximum(np.bincount(codes[counted], minlength=n_classes), 1))
    n_flip = int(np.round(np.sum(share * per_class)))
    order = np.lexsort((keys, -score))  # most suspicious first; ties by content
    flagged = order[:n_flip]
    flagged = flagged[score[flagged] > 0.5 + 1e-9]  # never a row whose own label wins or ties
    return FlipScores(score, suggested, flagged, model, len(folds), k)


# -- the check --------------------------------------------------------------------------------------
@register_check(CHECK, applies_to="dataset", title="Label flips", requires=("labels",), cost="slow")
def label_flips(*, X: Any, y: Any = None, feature_names: Any = None, budget: Budget) -> list[Finding]:
    """Rows whose label disagrees with out-of-fold model probabilities and their neighbours' labels."""
    if y is None:
        return [_skipped("Label flips not checked", "No labels (y) were given; label flips need labels.")]
    capped = dataclasses.replace(budget, max_rows=min(budget.max_rows, MAX_ROWS))  # shares notes/cancel
    try:
        table = prepare_features(X, capped, feature_names, y=y)
    except UnsupportedData as exc:
        return [_skipped("Label flips not checked", exc.message, exc.severity)]
    budget.checkpoint()
    labels, reason = _read_labels(y, table, capped)
    if labels is None:
        return [_skipped("Label flips not checked", reason)]
    valid = np.flatnonzero(labels.codes >= 0)
    codes_all = labels.codes[valid]
    present, codes = np.unique(codes_all, return_inverse=True)
    codes = codes.reshape(-1)
    counts = np.bincount(codes, minlength=len(present))
    if len(present) < 2:
        return [_skipped("Label flips not checked",
                         "y has only one class among the labelled rows; label flips need at least two classes.")]
    if counts.min() < MIN_PER_CLASS:
        small = [labels.classes[present[c]] for c in np.flatnonzero(counts < MIN_PER_CLASS)]
        return [_skipped("Label flips not checked",
                         f"Too few rows per class: label flips need at least {MIN_PER_CLASS} labelled rows in "
                         f"every class, and {_names(small)} {'has' if len(small) == 1 else 'have'} fewer "
                         f"(smallest: {int(counts.min())}).")]
    readable = table.values if table.readable.all() else table.values[:, table.readable]
    unreadable = table.unreadable_rows
    if unreadable is not None:  # unreadable cells are NaN and get the median like missing ones
        budget.note(f"{plural(int(unreadable.sum()), 'row')} holding unreadable values scored on the rest")
    raw = readable if len(valid) == len(readable) else readable[valid]
    keys = content_hashes(raw, as_dtype=np.float32)  # folds by content, the same for a float32 copy (Q4)
    Z = scaled_features(raw)
    if Z.shape[1] == 0:
        return [_skipped("Label flips not checked",
                         f"No feature varies across the {plural(len(raw), 'labelled row')} (every readable column "
                         f"holds a single value), so the features cannot say which label a row should have.")]
    budget.checkpoint()
    result = flip_scores(Z, codes, len(present), budget, keys)
    names = [labels.classes[c] for c in present]
    return [_finding(table, labels, valid, codes, names, result, budget)]


def _read_labels(y: Any, table: Table, budget: Budget) -> tuple[Labels | None, str]:
    try:
        labels = labels_for(y, table, budget)
    except UnsupportedData as exc:
        return None, f"{exc.message}; label flips not checked."
    if labels.target_type == "continuous":
        return None, ("y looks continuous (a regression target); label flips are only checked for "
                      "classification labels.")
    if labels.target_type == "unknown" or labels.n_classes == 0:
        return None, "y has no usable labels (all missing); label flips not checked."
    return labels, ""


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _finding(table: Table, labels: Labels, valid: np.ndarray, codes: np.ndarray, names: list[str],
             result: FlipScores, budget: Budget) -> Finding:
    n = len(codes)
    flagged = result.flagged
    rate = len(flagged) / n if n else 0.0
    original = table.positions(valid)
    pairs: dict[tuple[str, str], int] = {}
    for i in flagged:
        key = (names[codes[i]], names[result.suggested[i]])
        pairs[key] = pairs.get(key, 0) + 1
    top_pairs = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PAIRS]
    metrics: dict[str, Any] = {
        "estimated_flip_rate": round(rate, 6),
        # the sampling interval of the flagged share (95% Clopper–Pearson over the rows scored); the
        # detector's own misses and false flags are not in it
        "estimated_flip_rate_ci": proportion_ci(len(flagged), n),
        "n_flagged": int(len(flagged)),
        "n_labelled": int(n),
        "class_pairs": [{"label": a, "looks_like": b, "count": c} for (a, b), c in top_pairs],
        "top_rows": [{"row": int(original[i]), "label": names[codes[i]], "suggested": names[result.suggested[i]],
                      "score": round(float(result.score[i]), 4)} for i in flagged[:TOP_ROWS]],
        "model": result.model,
        "folds": result.folds,
        "neighbours": result.neighbours,
    }
    if labels.n_missing:
        metrics["unlabelled_rows_skipped"] = int(labels.n_missing)
    if table.sampled:
        metrics.update(sampled_rows=table.n_rows, total_rows=table.n_rows_total)
    if budget.notes:
        metrics["notes"] = list(budget.notes)
    where = (f" (in a random sample of {table.n_rows:,} of {table.n_rows_total:,} rows)" if table.sampled else "")
    method = (f"Out-of-fold probabilities ({result.model}, {result.folds} folds) averaged with the labels of "
              f"the {result.neighbours} nearest neighbours")
    if not len(flagged):
        return Finding(CHECK, Severity.INFO, "No label flips found",
                       f"{method}: no labelled row{where} looks like another class more than its own "
                       f"(of {plural(n, 'labelled row')}; estimated flip rate 0%).", metrics=metrics)
    severity = (Severity.HIGH if rate >= HIGH_RATE else Severity.MEDIUM if rate >= MEDIUM_RATE
                else Severity.LOW if rate >= LOW_RATE else Severity.INFO)
    (a, b), count = top_pairs[0]
    summary = (f"{plural(len(flagged), 'labelled row')} of {n:,}{where} look more like another class than their "
               f"own label: {method}, confident-learning count. Most suspected flips are labelled '{a}' but "
               f"look like '{b}' ({count:,})")
    if len(top_pairs) > 1:
        summary += "; then " + ", ".join(f"'{p}' → '{q}' ({c:,})" for (p, q), c in top_pairs[1:3])
    summary += ". Indices are the flagged rows, most suspicious first."
    if rate < MEDIUM_RATE:
        summary += " A rate this low is typical of classes that genuinely overlap."
    advice = ("Review the flagged rows (metrics['top_rows'] lists the most suspicious with a suggested label) "
              "and relabel or drop wrong ones; retrain without the flagged rows and compare held-out "
              "accuracy; and check where the labels came from (annotator, merge, scraping, an outside "
              "contributor) — clustered flips between two classes point at a deliberate flipping attack.")
    return Finding(CHECK, severity, f"About {100 * rate:.1f}% of labels look flipped", summary, metrics=metrics,
                   indices=original[flagged], recommendation=advice)


def _skipped(title: str, message: str, severity: str = "info") -> Finding:
    return Finding(CHECK, Severity.parse(severity), title, message, metrics=dict(_CLEAN_METRICS),
                   recommendation="Pass features X and one class label per row (y) with at least "
                                  f"{MIN_PER_CLASS} rows in every class to run this check.")
