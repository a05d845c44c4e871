"""What every robustness and model-theft probe needs: the model under test on a numeric sample of
rows with their labels, the data's own scale and range, and the linear form of linear models.

* :func:`prepare_target` reads (a sample of) ``X`` and ``y`` without changing them and wraps the model
  in a :class:`~mlsec_jupyter.checks._models.ModelProbe` (a torch module is probed on a private
  eval-mode CPU copy; an estimator is only asked ``predict`` / ``predict_proba`` /
  ``decision_function``).
* :class:`Scale` says in which units perturbations are measured. When every feature spans about the
  same range (pixels, already standardised data) a perturbation is measured in the data's own units,
  as torchattacks and ART do; when the features have different scales (raw tabular data: an "area"
  in the thousands next to a "smoothness" of 0.1) a fixed ε means nothing, so each feature's
  perturbation is measured in units of that feature's standard deviation. Adversarial rows are kept
  inside the range the data spans (per feature in "std" units, globally for "data" units).
* :func:`eps_grid` derives the ε values to try from the data itself: half the median distance from a
  row to the nearest row of another class (in the chosen norm and units) is the distance at which a
  perfectly robust classifier could still be right, and the grid runs from a tenth of it to all of it.
  On digits scaled to [0, 1] with L∞ this gives 0.05 … 0.5, the range the literature uses for MNIST-like
  data; on tabular data it adapts to the features instead of a fixed 8/255.
* :func:`linear_form` returns ``(W, b)`` with ``decision_function(x) = x @ W.T + b`` for scikit-learn
  linear classifiers, also behind affine scalers in a Pipeline, checked numerically on sample rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._models import ModelProbe, probe_for
from .._tabular import UnsupportedData, n_samples, prepare_features
from ..budget import Budget

#: Fractions of the class gap (half the median nearest-other-class distance) tried as ε.
GAP_FRACTIONS = (0.1, 0.2, 0.4, 0.7, 1.0)
#: Rows used to measure the class gap, at most (against at most this many reference rows, ×5).
GAP_ROWS = 1000
#: Features whose range is at most this many times the median range count as one scale.
SAME_SCALE_RATIO = 4.0
NORMS = ("linf", "l2")


class NotProbed(Exception):
    """The model cannot be probed on this data; ``message`` says why and what to do."""

    def __init__(self, message: str, severity: Severity = Severity.INFO) -> None:
        super().__init__(message)
        self.message = message
        self.severity = severity


def skipped(check: str, title: str, message: str, severity: Severity = Severity.INFO,
            recommendation: str = "") -> Finding:
    """The one finding a probe returns when it could not run (checked and *not* clean)."""
    return Finding(check, severity, title, message, metrics={"skipped": True}, recommendation=recommendation)


@dataclass
class Scale:
    """Units and bounds of perturbations.

    ``unit[j]`` is how much of feature ``j`` one unit of ε is (1 for "data" units, the feature's
    standard deviation for "std" units); ``lower``/``upper`` are the per-feature bounds adversarial rows
    are clipped to.
    """

    kind: str  # "data" or "std"
    unit: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @property
    def words(self) -> str:
        return "the data's own units" if self.kind == "data" else "standard deviations of each feature"

    def clip(self, rows: np.ndarray) -> np.ndarray:
        return np.clip(rows, self.lower, self.upper)


def data_scale(values: np.ndarray, kind: str = "auto") -> Scale:
    """The :class:`Scale` of ``values`` (rows × features, finite floats); ``kind`` is ``"auto"``,
    ``"data"`` or ``"std"`` (see the module docstring)."""
    if kind not in ("auto", "data", "std"):
        raise ValueError(f"scale must be 'auto', 'data' or 'std', got {kind!r}.")
    lo, hi = values.min(axis=0), values.max(axis=0)
    spread = hi - lo
    varied = spread > 0
    if kind == "auto":
        kind = "data"
        if varied.any() and spread[varied].max() > SAME_SCALE_RATIO * np.median(spread[varied]):
            kind = "std"
    if kind == "data":
        low, high = float(lo.min()), float(hi.max())
        d = values.shape[1]
        return Scale("data", np.ones(d), np.full(d, low), np.full(d, high))
    std = values.std(axis=0)
    floor = np.median(std[std > 0]) if (std > 0).any() else 1.0
    unit = np.where(std > 0, std, floor)  # a constant feature gets a typical unit (its range is 0 anyway)
    return Scale("std", unit, lo, hi)


def class_gap(values: np.ndarray, codes: np.ndarray, scale: Scale, norm: str, rng: np.random.Generator) -> float:
    """Half the median distance (in ``norm`` and ``scale`` units) from a row to its nearest row of
    another class; ``nan`` when there are fewer than two classes."""
    from sklearn.neighbors import NearestNeighbors

    ok = codes >= 0
    z = values[ok] / scale.unit
    c = codes[ok]
    if len(np.unique(c)) < 2:
        return float("nan")
    query = rng.choice(len(z), size=min(GAP_ROWS, len(z)), replace=False)
    metric = "chebyshev" if norm == "linf" else "euclidean"
    gaps = []
    for cls in np.unique(c[query]):
        mine = query[c[query] == cls]
        others = np.flatnonzero(c != cls)
        if len(others) > 5 * GAP_ROWS:
            others = rng.choice(others, size=5 * GAP_ROWS, replace=False)
        nn = NearestNeighbors(n_neighbors=1, metric=metric).fit(z[others])
        gaps.append(nn.kneighbors(z[mine], return_distance=True)[0][:, 0])
    return float(np.median(np.concatenate(gaps))) / 2.0


def round_sig(x: float, digits: int = 2) -> float:
    if not np.isfinite(x) or x == 0:
        return float(x)
    return float(f"{x:.{digits}g}")


def eps_grid(gap: float, fractions: tuple[float, ...] = GAP_FRACTIONS) -> list[float]:
    """ε values from a class gap (:func:`class_gap`), rounded to two significant digits."""
    if not np.isfinite(gap) or gap <= 0:
        return []
    return sorted({round_sig(gap * f) for f in fractions})


def check_eps(eps: Any, name: str = "eps") -> list[float]:
    """A user's ε (or σ, ``name``) list as sorted positive floats; raises ``ValueError`` with a fix-it
    message."""
    values = [eps] if np.isscalar(eps) else list(eps)
    try:
        out = sorted({float(e) for e in values})
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a list of numbers, got {eps!r}.") from None
    if not out or any(not np.isfinite(e) or e <= 0 for e in out):
        raise ValueError(f"{name} must be positive finite numbers, got {eps!r}; e.g. {name}=[0.05, 0.1].")
    return out


def check_norm(norm: str) -> str:
    text = str(norm).lower().replace("∞", "inf")
    text = {"inf": "linf", "l_inf": "linf", "2": "l2", "l_2": "l2"}.get(text, text)
    if text not in NORMS:
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}.")
    return text


def norm_words(norm: str) -> str:
    return "L∞" if norm == "linf" else "L2"


# ==================================================================================================
# the model under test on a sample of rows
# ==================================================================================================
@dataclass
class Target:
    """A model and a numeric sample of rows to probe it on.

    ``values`` are flat float64 rows (a private copy), ``labels`` the true labels in the form the
    model's predictions take (class indices for torch, the raw labels for estimators), ``codes`` the
    labels as 0..C-1 codes (for class-wise statistics), ``positions`` the rows' positions in the user's
    data.
    """

    probe: ModelProbe
    values: np.ndarray
    labels: np.ndarray
    codes: np.ndarray
    classes: list[Any]
    positions: np.ndarray
    n_total: int
    notes: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    def correct(self, rows: np.ndarray, budget: Budget | None = None) -> np.ndarray:
        """Whether the model predicts each row's true label (``rows`` aligned with :attr:`labels`)."""
        return np.asarray(self.probe.predict(rows, budget) == self.labels, dtype=bool).reshape(-1)


def _label_rows(y: Any, rows: np.ndarray | None, n_rows: int) -> np.ndarray:
    n_y = n_samples(y)
    if n_y is not None and n_y != n_rows:
        raise NotProbed(f"X has {n_rows:,} rows but y has {n_y:,} labels; pass one label per row.", Severity.LOW)
    module = str(getattr(type(y), "__module__", ""))
    try:
        if module.startswith("torch"):
            a = (y if rows is None else y[np.asarray(rows)]).detach().cpu().numpy()
            rows = None  # already taken
        elif module.startswith("pandas"):
            a = y.to_numpy()
        else:
            a = np.asarray(y)
    except Exception as exc:  # meta or quantized tensors, exotic containers
        raise NotProbed(f"y ({type(y).__name__}) could not be read as labels ({type(exc).__name__}); pass a "
                        f"numpy array or a list of class labels.", Severity.LOW) from None
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise NotProbed(f"y has shape {a.shape}; one class label per row is needed.", Severity.LOW)
    return a if rows is None else a[rows]


@dataclass
class Rows:
    """A finite, labelled numeric sample of ``X`` (see :func:`read_rows`)."""

    values: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    n_total: int
    numeric: bool
    notes: list[str]


def read_rows(X: Any, y: Any, budget: Budget, *, max_rows: int, name: str = "X") -> Rows:
    """Up to ``max_rows`` rows of ``X`` with finite values and a label (drawn with the budget's RNG), as a
    private float64 copy; raises :class:`NotProbed` when ``X`` or ``y`` cannot be read."""
    if y is None:
        raise NotProbed("No labels were given; robustness is measured as accuracy, which needs y.")
    try:
        table = prepare_features(X, budget, name=name, allow_nd=True)
    except UnsupportedData as exc:
        raise NotProbed(exc.message, Severity.INFO if exc.severity == "info" else Severity.LOW) from None
    raw = _label_rows(y, table.rows, table.n_rows_total)
    values = table.values
    keep = np.isfinite(values).all(axis=1)
    try:
        keep &= ~np.asarray([v is None or (isinstance(v, float) and not np.isfinite(v)) for v in raw.tolist()],
                            dtype=bool).reshape(-1)
    except TypeError:
        pass
    notes = list(table.notes)
    if not keep.all():
        notes.append(f"left out {int((~keep).sum()):,} rows with missing values or labels")
    local = np.flatnonzero(keep)
    if len(local) > max_rows:
        local = np.sort(budget.rng().choice(local, size=max_rows, replace=False))
    if len(local) == 0:
        raise NotProbed("No row with finite numeric features and a label is left to probe the model on.",
                        Severity.LOW)
    numeric = all(k in ("numeric", "bool") for k in table.column_kinds)
    return Rows(np.ascontiguousarray(values[local]), raw[local], table.positions(local), table.n_rows_total,
                numeric, notes)


def codes_of(labels: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """(sorted distinct labels, each label's 0..C-1 code)."""
    classes, codes = np.unique(labels.astype(str) if labels.dtype.kind == "O" else labels, return_inverse=True)
    return list(classes.tolist()), codes.reshape(-1)


#: Rows predicted twice to tell whether a model is deterministic (reliability B35).
DETERMINISM_ROWS = 64


def prepare_target(model: Any, X: Any, y: Any, budget: Budget, *, max_rows: int, name: str = "X",
                   deterministic: bool = False) -> Target:
    """The model and up to ``max_rows`` labelled, finite numeric rows of ``X`` (:func:`read_rows`); raises
    :class:`NotProbed` with the reason when the model or the data cannot be probed, or, with
    ``deterministic``, when two predictions of the same rows disagree (:func:`require_deterministic`)."""
    rows = read_rows(X, y, budget, max_rows=max_rows, name=name)
    probe, why = probe_for(model, X, rows.numeric)
    if probe is None:
        raise NotProbed(f"The model was not probed: {why}.")
    if deterministic:
        require_deterministic(probe, rows.values[:DETERMINISM_ROWS], budget)
    labels = _class_indices(rows.labels) if probe.is_torch else rows.labels
    classes, codes = codes_of(labels)
    notes = list(rows.notes)
    if len(rows.values) < rows.n_total:
        notes.append(f"probed on {len(rows.values):,} of {rows.n_total:,} rows")
    return Target(probe, rows.values, labels, codes, classes, rows.positions, rows.n_total, notes)


def require_deterministic(probe: Any, rows: np.ndarray, budget: Budget) -> None:
    """Predict ``rows`` twice; different labels mean the model is random at prediction time (dropout left
    on, sampling), and a robustness figure would measure that randomness, not perturbations: raise
    :class:`NotProbed` saying so (reliability B35)."""
    if not len(rows):
        return
    first = probe.predict(rows, budget)
    budget.checkpoint()
    second = probe.predict(rows, budget)
    changed = int(np.sum(np.asarray(first) != np.asarray(second)))
    if changed:
        raise NotProbed(f"The model is not deterministic: {changed} of {len(rows)} rows got a different label when "
                        f"predicted twice, so no robustness verdict is given (it would measure the model's own "
                        f"randomness). Make predictions repeatable (model.eval(), a fixed seed inside predict) "
                        f"and run the check again; a randomised defence needs an attack that averages over its "
                        f"randomness (EOT).", Severity.LOW)


def _class_indices(labels: np.ndarray) -> np.ndarray:
    """Labels of a torch classifier as int64 class indices (float labels must be whole numbers)."""
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    raise NotProbed("A torch model's labels must be class indices (0, 1, 2 …); "
                    f"got labels of dtype {labels.dtype}.", Severity.LOW)


# ==================================================================================================
# linear models
# ==================================================================================================
_AFFINE_SCALERS = {"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler"}


def _affine(step: Any, d: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a, c)`` with ``step.transform(x) = a * x + c`` for the element-wise affine scalers."""
    if type(step).__name__ not in _AFFINE_SCALERS or not type(step).__module__.startswith("sklearn."):
        return None
    zeros, ones = np.zeros((1, d)), np.ones((1, d))
    names = getattr(step, "feature_names_in_", None)
    try:
        if names is not None:  # fitted on a DataFrame: ask with the same columns (no feature-name warning)
            import pandas as pd

            zeros, ones = pd.DataFrame(zeros, columns=names), pd.DataFrame(ones, columns=names)
        c = np.asarray(step.transform(zeros), dtype=np.float64)[0]
        a = np.asarray(step.transform(ones), dtype=np.float64)[0] - c
    except Exception:
        return None
    return a, c


def linear_form(model: Any, sample: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W, b)`` (``W``: classes-or-1 × features) such that ``decision_function(x) = x @ W.T + b``, for a
    fitted scikit-learn linear classifier (``coef_``, ``intercept_``), possibly the last step of a
    Pipeline whose earlier steps are affine scalers; ``None`` for anything else.

    With ``sample`` rows, the form is checked against ``decision_function`` (relative 1e-6) and
    ``None`` is returned on a mismatch, so a subclass that overrides the decision never gets a wrong
    closed form.
    """
    steps = list(getattr(model, "steps", [])) if type(model).__name__ == "Pipeline" else [(None, model)]
    if not steps:
        return None
    final = steps[-1][1]
    coef, intercept = getattr(final, "coef_", None), getattr(final, "intercept_", None)
    if coef is None or not callable(getattr(type(final), "decision_function", None)):
        return None
    try:
        W = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        b = np.broadcast_to(np.asarray(intercept, dtype=np.float64).reshape(-1), (W.shape[0],)).copy()
    except (TypeError, ValueError):
        return None
    d = W.shape[1]
    for _, step in reversed(steps[:-1]):
        if step is None or step == "passthrough":
            continue
        ac = _affine(step, d)
        if ac is None:
            return None
        a, c = ac
        b = b + W @ c
        W = W * a
    if sample is not None and len(sample):
        names = getattr(model, "feature_names_in_", None)
        try:
            asked = sample
            if names is not None:  # fitted on a DataFrame: ask with its columns (no feature-name warning)
                import pandas as pd

                asked = pd.DataFrame(sample, columns=names)
            got = np.asarray(model.decision_function(asked), dtype=np.float64).reshape(len(sample), -1)
        except Exception:
            return None
        mine = sample @ W.T + b
        if got.shape != mine.shape or not np.allclose(mine, got, rtol=1e-6, atol=1e-9 * (1 + np.abs(got).max())):
            return None
    return W, b


def is_classifier_probe(model: Any) -> bool:
    """False for scikit-learn regressors (robustness is measured as classification accuracy here)."""
    try:
        from sklearn.base import is_regressor

        return not (callable(getattr(type(model), "get_params", None)) and is_regressor(model))
    except Exception:
        return True
