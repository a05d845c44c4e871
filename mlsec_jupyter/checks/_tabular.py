"""Turn whatever the user passed as ``X`` / ``y`` into a safe numeric copy for the data checks.

Every data check starts here (reliability §4, B1–B29)::

    table = prepare_features(X, budget)              # Table: float64 copy of the rows used
    labels = prepare_labels(y, table.rows, budget)   # Labels: integer codes, -1 = missing

Rules kept by every function in this module:

* the user's object is only read, never written, consumed or iterated (streams are refused);
* objects are classified by their *type* (module path and MRO), never by ``repr()``,
  ``hasattr()`` or instance attributes of unknown objects (B30);
* pandas, scipy and torch are imported only when the object's type says it comes from them;
* big data is sampled with :meth:`Budget.sample_rows` (private RNG, sorted rows) *before* anything
  is converted, so one table holds at most ``budget.max_cells`` float64 cells (``budget.MAX_CELLS`` by default);
* what cannot be checked raises :class:`UnsupportedData` with a sentence the card can show.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as _dt
import decimal
import fractions
import sys
import types
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..artifacts import class_has, mro_names
from .budget import Budget

#: Column names and example values are cut to this many characters.
MAX_NAME = 80
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Integers beyond this magnitude are not exactly representable as float64.
EXACT_INT_LIMIT = 2**53
#: Float labels with non-integer values and more distinct values than this are "continuous" (B13).
CONTINUOUS_MIN_DISTINCT = 10

#: Dask collections are sampled lazily: contiguous runs of rows from this many partitions at least.
DASK_MIN_PARTITIONS = 8
_LAZY_ROOTS = {"dask", "polars", "modin", "cudf", "pyspark", "ray", "vaex", "xarray", "ibis", "duckdb"}

# value kinds found in object columns
# value kinds found in object columns; _TEXTLIKE values come from trusted libraries whose str() is safe
_MISSING, _BOOL, _NUMBER, _STR, _BYTES, _DATETIME, _TEXTLIKE, _OTHER = range(8)
_KIND_WORDS = {_BOOL: "booleans", _NUMBER: "numbers", _STR: "text values", _BYTES: "bytes values",
               _DATETIME: "dates", _TEXTLIKE: "durations/periods/intervals", _OTHER: "other objects"}
_PANDAS_TEXTLIKE = {"Period", "Interval", "Timedelta"}
_CENSUS: dict[type, int] = {
    type(None): _MISSING, bool: _BOOL, np.bool_: _BOOL, int: _NUMBER, float: _NUMBER,
    decimal.Decimal: _NUMBER, fractions.Fraction: _NUMBER, str: _STR, np.str_: _STR,
    bytes: _BYTES, np.bytes_: _BYTES, _dt.datetime: _DATETIME, _dt.date: _DATETIME,
    np.datetime64: _DATETIME, _dt.timedelta: _TEXTLIKE, _dt.time: _TEXTLIKE, np.timedelta64: _TEXTLIKE,
    uuid.UUID: _TEXTLIKE,
}
_NS_PER_UNIT = {"D": 86_400 * 10**9, "h": 3_600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6,
                "us": 10**3, "ns": 1, "ps": 1e-3, "fs": 1e-6, "as": 1e-9}


class UnsupportedData(Exception):
    """The input cannot be checked; ``message`` says why and what to do. Checks turn it into a finding.

    ``severity`` is ``"info"`` for inputs that are deliberately not read (streams, lazy frames) and
    ``"low"`` for data that is there but unusable (empty, complex, ragged).
    """

    def __init__(self, message: str, *, severity: str = "low") -> None:
        super().__init__(message)
        self.message = message
        self.severity = severity


@dataclass(frozen=True)
class Issue:
    """A dtype problem found while converting one column (reported by ``data.integrity``).

    ``kind`` is one of ``mixed_types``, ``numbers_as_text``, ``float16``, ``beyond_float32``,
    ``int_precision``, ``unreadable_objects``; ``count`` is how many values are affected.
    """

    kind: str
    column: str
    message: str
    count: int = 0


@dataclass
class Table:
    """A float64 copy of (a sample of) the user's features.

    ``values[i]`` is the user's row ``rows[i]`` (``rows is None``: all rows, in order). Missing values
    are NaN; text/categorical columns hold integer codes whose keys are in ``categories[j]``;
    ``column_kinds[j]`` is one of numeric, categorical, text, bool, datetime, mixed, object
    ("object" columns hold values that could not be read; they are all NaN and should be ignored).
    ``unreadable[j]`` marks the rows of column ``j`` whose value could not be read (NaN in
    ``values`` but not missing), so checks can leave those cells or rows out.
    """

    values: np.ndarray
    rows: np.ndarray | None
    n_rows_total: int
    columns: list[str]
    column_kinds: list[str]
    notes: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    categories: dict[int, list[str]] = field(default_factory=dict)
    unreadable: dict[int, np.ndarray] = field(default_factory=dict)
    #: Dask DataFrames: the ``(partition, start, stop, partition length)`` runs read, so labels can be
    #: read alike.
    source_windows: list[tuple[int, int, int, int]] | None = None

    @property
    def n_rows(self) -> int:
        """Rows in :attr:`values` (the sample size when sampled)."""
        return int(self.values.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    @property
    def sampled(self) -> bool:
        return self.rows is not None

    @property
    def readable(self) -> np.ndarray:
        """Boolean mask of columns whose values mean something (not ``object`` kind)."""
        return np.array([k != "object" for k in self.column_kinds], dtype=bool)

    @property
    def unreadable_rows(self) -> np.ndarray | None:
        """Rows holding at least one value that could not be read (``None``: every value was read)."""
        if not self.unreadable:
            return None
        out = np.zeros(self.n_rows, dtype=bool)
        for mask in self.unreadable.values():
            out |= mask
        return out

    def missing_mask(self) -> np.ndarray:
        """Boolean (rows, features) mask of missing values: NaN, except cells that could not be read."""
        mask = np.isnan(self.values)
        for j, rows in self.unreadable.items():
            mask[:, j] &= ~rows
        return mask

    def positions(self, local: Any = None) -> np.ndarray:
        """Original row positions of local row indices (all rows when ``local`` is None)."""
        local_idx = np.arange(self.n_rows) if local is None else np.asarray(local, dtype=np.int64)
        return local_idx if self.rows is None else self.rows[local_idx]


@dataclass(frozen=True)
class Labels:
    """Labels as integer codes (``-1`` = missing: None, NaN, pd.NA, ±inf).

    ``classes[c]`` is the text of code ``c``. For continuous targets ``classes`` is empty, ``codes``
    only identify distinct values and ``values`` holds the numbers. ``target_type`` is ``binary``
    (at most two classes, as in scikit-learn's ``type_of_target``), ``multiclass``, ``continuous``
    or ``unknown`` (no valid label).
    """

    codes: np.ndarray
    classes: list[str]
    n_missing: int
    target_type: str
    values: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> dict[str, int]:
        """Rows per class, in class order (``{}`` for continuous or unknown targets)."""
        if not self.classes:
            return {}
        counts = np.bincount(self.codes[self.codes >= 0], minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}


@dataclass
class _Col:
    """One converted column."""

    values: np.ndarray
    kind: str
    keys: list[str] | None = None
    issues: list[tuple[str, str, int]] = field(default_factory=list)  # (kind, message, count)
    unreadable: np.ndarray | None = None  # rows whose value could not be read


# --------------------------------------------------------------------------------------------------
# type inspection (class level only)
# --------------------------------------------------------------------------------------------------
def _type_name(obj: Any) -> str:
    """``module.Qualname`` of the object's type, without touching the object."""
    tp = type(obj)
    try:
        module = tp.__module__ or ""
        name = tp.__qualname__
    except Exception:  # a hostile metaclass
        return "unknown type"
    return name if module == "builtins" else f"{module}.{name}"


def _is_torch_tensor(tp: type) -> bool:
    return _module_of(tp).startswith("torch") and "torch.Tensor" in mro_names(tp)


def _is_stream(tp: type) -> bool:
    if tp is types.GeneratorType or tp is types.AsyncGeneratorType:
        return True
    if "torch.utils.data.dataset.IterableDataset" in mro_names(tp):
        return True
    return class_has(tp, "__next__") or class_has(tp, "__anext__")


def _module_of(tp: type) -> str:
    try:
        return str(tp.__module__ or "")
    except Exception:
        return ""


def _root_module(obj: Any) -> str:
    return _module_of(type(obj)).split(".", 1)[0]


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def _short(text: str, limit: int = MAX_NAME) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_NAME_TYPES = (str, int, float, bool, np.integer, np.floating, np.str_, np.bool_)


def _plain_scalar(value: Any) -> bool:
    """A built-in or numpy scalar, whose ``str()`` runs no user code."""
    return isinstance(value, _NAME_TYPES) and _module_of(type(value)) in ("builtins", "numpy")


def _label_text(value: Any, position: int) -> str:
    """A column label as text: plain scalars and tuples of them (MultiIndex), else the position (B5)."""
    if type(value) is tuple and value and all(_plain_scalar(v) for v in value):
        return " / ".join(str(v) for v in value)
    if _plain_scalar(value):
        return str(value)
    return f"column {position}"


def _unique_names(raw: Sequence[str]) -> list[str]:
    """Truncate names and make repeated ones unique: ``a``, ``a (2)``... (B5)."""
    seen: dict[str, int] = {}
    out = []
    for name in raw:
        name = _short(name)
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _names_from(feature_names: Any) -> list[str] | None:
    if feature_names is None:
        return None
    if isinstance(feature_names, np.ndarray) or type(feature_names) in (list, tuple):
        return [_label_text(v, i) for i, v in enumerate(list(feature_names))]
    if _module_of(type(feature_names)).startswith("pandas") and type(feature_names).__name__.endswith("Index"):
        return [_label_text(v, i) for i, v in enumerate(feature_names.tolist())]
    return None


def row_limit(n_features: int, budget: Budget, name: str = "X") -> int:
    """Rows one table of ``n_features`` columns may hold under ``budget`` (rows and cells)."""
    if n_features > budget.max_cells:
        raise UnsupportedData(f"{name} has {n_features:,} features per row; one row is over the "
                              f"{budget.max_cells:,}-value memory budget, so it was not checked.")
    return min(budget.max_rows, max(1, budget.max_cells // max(n_features, 1)))


#: The labels of the data :func:`prepare_features` is reading, when its caller gave them (a context
#: variable: each check thread has its own), so a sample can keep the rows of rare classes.
_STRATA: contextvars.ContextVar[Any] = contextvars.ContextVar("mlsec_strata", default=None)
#: A sample keeps at least this many rows of every class (all of a smaller class; reliability B15).
MIN_CLASS_ROWS = 20
#: Labels with more distinct values than this are IDs or a continuous target, not classes to keep.
MAX_RARE_CLASSES = 1000


def _sample_rows(n_rows: int, n_features: int, budget: Budget, name: str) -> np.ndarray | None:
    """Sorted row positions to read, or None for all rows (B16, B17); rows of rare classes are added
    when the labels are known (:func:`_keep_rare_classes`, B15)."""
    limit = row_limit(n_features, budget, name)
    what = "rows" if name == "X" else f"rows of {name}"
    if n_rows <= limit:
        return None
    if limit >= budget.max_rows:
        idx = budget.sample_rows(n_rows, what=what)
    else:
        idx = np.sort(budget.rng().choice(n_rows, size=limit, replace=False))
        budget.note(f"sampled {limit:,} of {n_rows:,} {what} ({n_features:,} features each, memory budget)")
    return _keep_rare_classes(idx, n_rows, budget)  # a no-op unless prepare_features was given labels


def full_label_codes(y: Any, n_rows: int) -> np.ndarray | None:
    """Class codes (0..C-1, in sorted order of the values) of *every* label, for labels cheap to read in full: a
    1-D numeric or boolean numpy array, pandas Series or CPU torch tensor of ``n_rows`` labels; ``None``
    for anything else (object labels, lazy data, other lengths). Missing (NaN) labels get code -1."""
    tp = type(y)
    module = _module_of(tp)
    try:
        if isinstance(y, np.ndarray):
            a = y.view(np.ndarray)
        elif module.startswith("pandas") and tp.__name__ == "Series" and str(y.dtype) != "category":
            a = y.to_numpy()
        elif _is_torch_tensor(tp) and _torch_refusal(y, "y") is None and y.device.type == "cpu":
            a = y.detach().numpy()
        else:
            return None
    except Exception:
        return None
    if a.dtype.kind not in "biuf" or a.size != n_rows or a.ndim not in (1, 2) or a.shape[0] != n_rows:
        return None
    a = a.reshape(n_rows)
    valid = ~np.isnan(a) if a.dtype.kind == "f" else None
    inverse = np.unique(a if valid is None else a[valid], return_inverse=True)[1].reshape(-1)
    if valid is None:
        return inverse
    codes = np.full(n_rows, -1, dtype=np.int64)
    codes[valid] = inverse
    return codes


def _class_codes_any_order(y: Any, n_rows: int) -> np.ndarray | None:
    """Class codes of every label, in no particular order, for finding rare classes: numeric labels as in
    :func:`full_label_codes`; a pandas categorical by its category codes; text or object labels (a 1-D
    numpy array or pandas Series) by one hashing pass (``pandas.factorize``; missing labels get -1).
    ``None`` for anything else, or values that cannot be hashed."""
    codes = full_label_codes(y, n_rows)
    if codes is not None:
        return codes
    tp = type(y)
    try:
        if _module_of(tp).startswith("pandas") and tp.__name__ == "Series":
            # categorical: its codes; any other dtype (text, Arrow, nullable Int64/boolean) hashed as it is
            codes = y.cat.codes.to_numpy() if str(y.dtype) == "category" else _factorized(y)
        elif isinstance(y, np.ndarray) and y.dtype.kind in "OUS" and y.ndim == 1:
            codes = _factorized(y)
    except Exception:
        return None
    return None if codes is None or codes.shape != (n_rows,) else codes.astype(np.int64, copy=False)


def _factorized(values: Any) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.factorize(values, use_na_sentinel=True)[0])


def _keep_rare_classes(idx: np.ndarray, n_rows: int, budget: Budget) -> np.ndarray:
    """``idx`` with rows of the classes it holds fewer than :data:`MIN_CLASS_ROWS` of swapped in (all rows
    of a smaller class), so a 1-in-10M positive does not vanish from a sample (reliability B15).

    The sample keeps its size (the rows swapped out are random rows of the well-represented classes; at
    most a tenth of the sample changes), so the memory budget holds. Skipped for labels with more than
    :data:`MAX_RARE_CLASSES` distinct values (IDs or a continuous target, not classes)."""
    codes = _class_codes_any_order(_STRATA.get(), n_rows)
    if codes is None:
        return idx
    total = np.bincount(codes[codes >= 0])
    if len(total) > MAX_RARE_CLASSES:
        return idx
    in_sample = codes[idx]
    held = np.bincount(in_sample[in_sample >= 0], minlength=len(total))
    want = np.minimum(total, MIN_CLASS_ROWS) - held
    short = np.flatnonzero(want > 0)
    room = len(idx) // 10
    if not len(short) or room < 1:
        return idx
    rng, extra = budget.rng(), []
    order = np.argsort(codes, kind="stable")  # rows grouped by class, one pass
    starts = np.searchsorted(codes[order], np.arange(len(total)))
    for c in short[np.argsort(total[short], kind="stable")]:  # rarest first
        budget.checkpoint()
        rows_c = order[starts[c]:starts[c] + total[c]]
        spare = np.setdiff1d(rows_c, idx, assume_unique=True)
        take = min(int(want[c]), len(spare), room - sum(len(e) for e in extra))
        if take <= 0:
            break
        extra.append(rng.choice(spare, size=take, replace=False))
    added = np.concatenate(extra) if extra else np.empty(0, dtype=np.int64)
    if not len(added):
        return idx
    common = np.flatnonzero((in_sample >= 0) & (held[in_sample.clip(0)] >= MIN_CLASS_ROWS + len(added)))
    if len(common) < len(added):
        return idx
    dropped = rng.choice(common, size=len(added), replace=False)
    kept = np.delete(idx, dropped)
    budget.note(f"{len(added):,} rows of {plural(len(extra), 'rare class', 'rare classes')} swapped into the "
                f"sample, so every class has rows in it (up to {MIN_CLASS_ROWS} each)")
    return np.union1d(kept, added)


def _check_rows_features(n_rows: int, n_features: int, shape: tuple[int, ...], name: str) -> None:
    if n_rows == 0:
        raise UnsupportedData(f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 is "
                              f"required: {name} is empty, nothing to check.")
    if n_features == 0:
        raise UnsupportedData(f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is "
                              f"required: {name} has no columns, nothing to check.")


def _nd_refusal(shape: tuple[int, ...], name: str) -> UnsupportedData:
    return UnsupportedData(f"Found array with dim {len(shape)} (shape={shape}); expected at most 2 "
                           f"(rows × features). Reshape it with {name}.reshape(len({name}), -1) to check it.")


def _complex_error(name: str, dtype: Any) -> UnsupportedData:
    return UnsupportedData(f"Complex data not supported: {name} has dtype {dtype}. Split it into real "
                           f"and imaginary parts (np.real / np.imag) to check it.")


# --------------------------------------------------------------------------------------------------
# value keys (shared by object columns, categoricals and train/test alignment)
# --------------------------------------------------------------------------------------------------
def _census_type(tp: type) -> int:
    """The value kind of every object of exact type ``tp`` (decided by the type alone)."""
    kind = _CENSUS.get(tp)
    if kind is not None:
        return kind
    if issubclass(tp, (np.integer, np.floating)) and _module_of(tp) == "numpy":
        return _NUMBER
    if _module_of(tp).startswith("pandas"):
        name = tp.__name__
        if name in {"NAType", "NaTType"}:
            return _MISSING
        if name == "Timestamp":
            return _DATETIME
        if name in _PANDAS_TEXTLIKE:
            return _TEXTLIKE
    return _OTHER


def _census(value: Any) -> int:
    return _census_type(type(value))


def _census_all(a: np.ndarray) -> np.ndarray:
    """Value kind of every element of a 1-D object array, one pass per distinct type."""
    types_ = np.frompyfunc(type, 1, 1)(a) if len(a) else np.empty(0, dtype=object)
    distinct = set(types_.tolist())
    if len(distinct) > 16:  # many types: classify element by element
        return np.fromiter((_census_type(t) for t in types_), dtype=np.int8, count=len(a))
    kinds = np.empty(len(a), dtype=np.int8)
    for tp in distinct:
        kinds[types_ == tp] = _census_type(tp)
    return kinds


def _floats(a: np.ndarray) -> np.ndarray:
    """Numbers in an object array (int, float, numpy, Decimal, Fraction, bool) -> float64."""
    try:
        with np.errstate(all="ignore"):
            return a.astype(np.float64)
    except (OverflowError, TypeError, ValueError):  # e.g. an int beyond float range
        return np.array([_to_float(v) for v in a], dtype=np.float64)


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")
    except (TypeError, ValueError):
        return float("nan")


def _number_key(x: float) -> str:
    return "n:" + repr(float(x) + 0.0)


def _datetime_ns(value: Any) -> float:
    """Nanoseconds since 1970 (UTC for aware datetimes) of a date, datetime, Timestamp or datetime64."""
    if isinstance(value, np.datetime64):
        return _datetime64_ns(np.asarray(value).reshape(1))[0]
    if not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    extra = int(value.nanosecond) if _module_of(type(value)).startswith("pandas") else 0
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    micros = (value - _dt.datetime(1970, 1, 1)) // _dt.timedelta(microseconds=1)
    return float(micros * 1000 + extra)


def _value_key(value: Any, kind: int) -> str | None:
    """A text key that is equal exactly when two values are the same (None: missing or unreadable)."""
    if kind in (_BOOL, _NUMBER):
        x = _to_float(value)
        return None if x != x else _number_key(x)
    if kind == _STR:
        return "s:" + str.__str__(value)
    if kind == _BYTES:
        return "b:" + bytes(value).decode("latin-1")
    if kind == _DATETIME:
        ns = _datetime_ns(value)
        return None if ns != ns else "d:" + repr(ns)
    if kind == _TEXTLIKE:
        text = str(value)
        return None if text in ("NaT", "nat") else "x:" + text
    return None


# --------------------------------------------------------------------------------------------------
# column converters
# --------------------------------------------------------------------------------------------------
def _datetime64_ns(a: np.ndarray) -> np.ndarray:
    """datetime64 / timedelta64 array -> float64 nanoseconds, NaT -> NaN."""
    unit, count = np.datetime_data(a.dtype)
    if unit in ("Y", "M", "W"):  # calendar units have no fixed length: go through days
        a = a.astype("datetime64[D]" if a.dtype.kind == "M" else "timedelta64[D]")
        unit, count = np.datetime_data(a.dtype)
    raw = a.astype(np.int64)  # a copy in native byte order; NaT is the smallest int64
    out = raw.astype(np.float64) * (_NS_PER_UNIT.get(unit, 1) * count)
    out[raw == np.iinfo(np.int64).min] = np.nan
    return out


def _factorize(items: Sequence[Any] | np.ndarray, n: int) -> tuple[np.ndarray, list[Any]]:
    """Codes of hashable, mutually comparable values, numbered in sorted-value order (so codes do not
    depend on row order), and the sorted distinct values. Hashing only: no sort of the whole column."""
    uniq = sorted(dict.fromkeys(items))
    index = {v: i for i, v in enumerate(uniq)}
    return np.fromiter(map(index.__getitem__, items), dtype=np.int64, count=n), uniq


def _codes_from_keys(keys: list[str | None]) -> tuple[np.ndarray, list[str]]:
    """Float codes (NaN for None) in sorted-key order, and the sorted keys."""
    present = np.fromiter((k is not None for k in keys), dtype=bool, count=len(keys))
    codes, uniq = _factorize([k for k in keys if k is not None], int(present.sum()))
    out = np.full(len(keys), np.nan)
    out[present] = codes
    return out, [str(u) for u in uniq]


def _numeric_column(a: np.ndarray, name: str) -> _Col:
    """A 1-D array of a numpy scalar dtype (not object) -> float64."""
    kind = a.dtype.kind
    if kind == "c":
        raise _complex_error(f"column '{name}'", a.dtype)
    if kind in "US":
        return _text_column(a, name)
    if kind in "Mm":
        return _Col(_datetime64_ns(a), "datetime")
    if kind == "V":
        n = len(a)
        return _Col(np.full(n, np.nan), "object",
                    issues=[("unreadable_objects", f"column '{name}' holds raw bytes (dtype {a.dtype}); "
                                                   f"it was not checked", n)],
                    unreadable=np.ones(n, dtype=bool))
    with np.errstate(all="ignore"):
        values = a.astype(np.float64)
    issues = []
    if kind == "b":
        return _Col(values, "bool")
    if kind in "iu" and a.dtype.itemsize >= 8 and a.size:
        big = int(np.count_nonzero((a > EXACT_INT_LIMIT) | (a < -EXACT_INT_LIMIT))) if kind == "i" \
            else int(np.count_nonzero(a > EXACT_INT_LIMIT))
        if big:
            issues.append(("int_precision", f"column '{name}' has {big:,} integers beyond 2**53, which "
                                            f"float64 cannot hold exactly", big))
    if kind == "f":
        if a.dtype.itemsize == 2:
            issues.append(("float16", f"column '{name}' is float16 (about 3 significant digits)", len(a)))
        elif a.dtype.itemsize >= 8:
            beyond = int(np.count_nonzero(np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)))
            if beyond:
                issues.append(("beyond_float32", f"column '{name}' has {beyond:,} values beyond float32 "
                                                 f"max (3.4e38)", beyond))
    return _Col(values, "numeric", issues=issues)


def _text_column(a: np.ndarray, name: str, missing: np.ndarray | None = None) -> _Col:
    """Strings (a numpy U/S array, or an object array of str or of bytes; ``missing`` marks entries
    that were None/NaN) -> numbers when every string is a number, else codes."""
    valid = np.ones(len(a), dtype=bool) if missing is None else ~missing
    present = a[valid]
    codes, uniq = _factorize(present.tolist() if a.dtype.kind in "US" else present, len(present))
    return _text_from_codes(codes, uniq, valid, name)


def _text_from_codes(codes: np.ndarray, uniq: list[Any], valid: np.ndarray, name: str) -> _Col:
    """``codes`` (one per valid row) index the sorted distinct strings ``uniq``."""
    parsed = np.array([_parse_float(u) for u in uniq], dtype=np.float64)
    numeric = ~np.isnan(parsed) | np.array([_is_nan_text(u) for u in uniq], dtype=bool)
    counts = np.bincount(codes, minlength=len(uniq))
    n_numeric = int(counts[numeric].sum()) if len(uniq) else 0
    values = np.full(len(valid), np.nan)
    if len(uniq) and numeric.all():
        values[valid] = parsed[codes]
        issue = ("numbers_as_text", f"column '{name}' holds {n_numeric:,} numbers stored as text", n_numeric)
        return _Col(values, "text", issues=[issue])
    keys = ["b:" + bytes(u).decode("latin-1") if isinstance(u, bytes) else "s:" + str(u) for u in uniq]
    values[valid] = codes
    issues = []
    if len(uniq) and n_numeric >= 0.5 * len(codes):
        bad = uniq[int(np.flatnonzero(~numeric)[0])]
        bad_text = bytes(bad).decode("latin-1") if isinstance(bad, bytes) else str(bad)
        others = len(codes) - n_numeric
        issues.append(("numbers_as_text", f"column '{name}' holds mostly numbers stored as text, with "
                                          f"{plural(others, 'entry', 'entries')} that "
                                          f"{'is not a number' if others == 1 else 'are not numbers'} "
                                          f"(e.g. '{_short(bad_text, 20)}')", n_numeric))
    return _Col(values, "text", keys=keys, issues=issues)


def _parse_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _is_nan_text(text: Any) -> bool:
    try:
        return bool(np.isnan(float(text)))
    except (TypeError, ValueError):
        return False


def _object_column(a: np.ndarray, name: str) -> _Col:
    """A 1-D object array: classify every value by exact type, then convert (B3)."""
    n = len(a)
    kinds = _census_all(a)
    found = {int(k) for k in np.unique(kinds)} - {_MISSING}
    missing = kinds == _MISSING
    if not found:
        return _Col(np.full(n, np.nan), "numeric")
    if found <= {_BOOL, _NUMBER}:
        values = np.full(n, np.nan)
        values[~missing] = _floats(a[~missing])
        return _Col(values, "bool" if found == {_BOOL} else "numeric")
    if found == {_STR} or found == {_BYTES}:  # exact str / np.str_ (or bytes): safe to hash and sort
        return _text_column(a, name, missing)
    if found == {_DATETIME}:
        values = np.full(n, np.nan)
        values[~missing] = [_datetime_ns(v) for v in a[~missing]]
        return _Col(values, "datetime")
    return _mixed_column(a, kinds, found, name)


def _mixed_column(a: np.ndarray, kinds: np.ndarray, found: set[int], name: str) -> _Col:
    """Several kinds of values, or values without a natural number: code them by exact value."""
    issues = []
    unreadable = kinds == _OTHER
    other = int(np.count_nonzero(unreadable))
    if other:
        example = next(_type_name(v) for v, k in zip(a, kinds) if k == _OTHER)
        issues.append(("unreadable_objects", f"column '{name}' holds {plural(other, 'value')} of type "
                                             f"{_short(example, 40)} that cannot be compared; left out "
                                             f"of the checks", other))
    readable = found - {_OTHER}
    unreadable_rows = unreadable if other else None
    if not readable:
        return _Col(np.full(len(a), np.nan), "object", issues=issues, unreadable=unreadable_rows)
    keys = [_value_key(v, int(k)) for v, k in zip(a, kinds)]
    values, categories = _codes_from_keys(keys)
    if len(readable) > 1:
        parts = [f"{_KIND_WORDS[k]} ({int(np.count_nonzero(kinds == k)):,})" for k in sorted(readable)]
        issues.append(("mixed_types", f"column '{name}' mixes {', '.join(parts[:-1])} and {parts[-1]}",
                       int(np.count_nonzero(kinds != _MISSING))))
    return _Col(values, "mixed" if len(readable) > 1 else "categorical", keys=categories, issues=issues,
                unreadable=unreadable_rows)


def _array_column(a: np.ndarray, name: str) -> _Col:
    return _object_column(a, name) if a.dtype.kind == "O" else _numeric_column(a, name)


# --------------------------------------------------------------------------------------------------
# assembling a table
# --------------------------------------------------------------------------------------------------
def _assemble(cols: list[_Col], names: list[str], rows: np.ndarray | None, n_total: int,
              notes: list[str], budget: Budget) -> Table:
    n = len(cols[0].values) if cols else 0
    values = np.empty((n, len(cols)), dtype=np.float64)
    issues, categories = [], {}
    unreadable = {}
    for j, (col, name) in enumerate(zip(cols, names)):
        values[:, j] = col.values
        issues.extend(Issue(kind, name, message, count) for kind, message, count in col.issues)
        if col.keys is not None:
            categories[j] = col.keys
        if col.unreadable is not None:
            unreadable[j] = col.unreadable
    for note in notes:
        budget.note(note)
    return Table(values=values, rows=rows, n_rows_total=n_total, columns=names,
                 column_kinds=[c.kind for c in cols], notes=list(notes), issues=issues, categories=categories,
                 unreadable=unreadable)


def _final_names(own: list[str] | None, feature_names: Any, k: int, notes: list[str]) -> list[str]:
    given = _names_from(feature_names)
    if own is None and given is not None:
        if len(given) == k:
            own = given
        else:
            notes.append(f"feature_names has {len(given)} names but X has {k} columns; columns are named "
                         f"by position")
    return _unique_names(own if own is not None else [str(j) for j in range(k)])


def _dense_table(a: np.ndarray, rows: np.ndarray | None, n_total: int, feature_names: Any,
                 notes: list[str], budget: Budget, name: str) -> Table:
    """A 2-D (or structured 1-D) numpy sample that we may read freely -> Table."""
    if a.dtype.names:
        cols, raw_names = [], []
        for field_name in a.dtype.names:
            sub = a[field_name]
            if sub.ndim == 1:
                cols.append(sub)
                raw_names.append(str(field_name))
            else:
                flat = sub.reshape(len(sub), -1)
                cols.extend(flat[:, i] for i in range(flat.shape[1]))
                raw_names.extend(f"{field_name}[{i}]" for i in range(flat.shape[1]))
        names = _final_names(raw_names, None, len(cols), notes)
        return _assemble([_array_column(c, nm) for c, nm in zip(cols, names)], names, rows, n_total, notes, budget)
    names = _final_names(None, feature_names, a.shape[1], notes)
    if a.dtype.kind in "biuf" and a.dtype.itemsize <= 8:
        return _fast_numeric(a, names, rows, n_total, notes, budget)
    cols = []
    for j in range(a.shape[1]):
        cols.append(_array_column(a[:, j], names[j]))
        budget.checkpoint()
    return _assemble(cols, names, rows, n_total, notes, budget)


def _fast_numeric(a: np.ndarray, names: list[str], rows: np.ndarray | None, n_total: int,
                  notes: list[str], budget: Budget) -> Table:
    """Whole-array conversion for plain bool/int/float data (the common case)."""
    with np.errstate(all="ignore"):
        values = np.array(a, dtype=np.float64, order="C", copy=True)
    kind = a.dtype.kind
    issues: list[Issue] = []
    if kind == "f" and a.dtype.itemsize == 2:
        issues = [Issue("float16", nm, f"column '{nm}' is float16 (about 3 significant digits)", len(a))
                  for nm in names]
    elif kind == "f" and a.dtype.itemsize == 8 and values.size:
        # column extremes first (no full-size temporaries), then count only in suspect columns
        suspect = (np.fmin.reduce(values, axis=0) < -FLOAT32_MAX) | (np.fmax.reduce(values, axis=0) > FLOAT32_MAX)
        for j in np.flatnonzero(suspect):
            col = values[:, j]
            count = int(np.count_nonzero(np.isfinite(col) & (np.abs(col) > FLOAT32_MAX)))
            if count:
                issues.append(Issue("beyond_float32", names[j], f"column '{names[j]}' has {count:,} values "
                                                                f"beyond float32 max (3.4e38)", count))
    elif kind in "iu" and a.dtype.itemsize == 8 and a.size:
        big = (a > EXACT_INT_LIMIT) | (a < -EXACT_INT_LIMIT) if kind == "i" else a > EXACT_INT_LIMIT
        for j in np.flatnonzero(big.any(axis=0)):
            count = int(big[:, j].sum())
            issues.append(Issue("int_precision", names[j], f"column '{names[j]}' has {count:,} integers "
                                                           f"beyond 2**53, which float64 cannot hold "
                                                           f"exactly", count))
    for note in notes:
        budget.note(note)
    kinds = ["bool" if kind == "b" else "numeric"] * values.shape[1]
    return Table(values=values, rows=rows, n_rows_total=n_total, columns=names, column_kinds=kinds,
                 notes=list(notes), issues=issues)


# --------------------------------------------------------------------------------------------------
# per-library readers
# --------------------------------------------------------------------------------------------------
def _from_numpy(X: np.ndarray, budget: Budget, feature_names: Any, name: str, allow_nd: bool,
                chosen: np.ndarray | None = None) -> Table:
    notes: list[str] = []
    a = X if type(X) is np.ndarray else X.view(np.ndarray)  # matrix / memmap / subclasses: read as plain
    if type(X) is np.matrix:
        notes.append(f"np.matrix {name} read as a 2-D array")
    if a.ndim == 0:
        raise UnsupportedData(f"{name} is a 0-d array (a single value), not a data set; nothing to check.",
                              severity="info")
    if a.dtype.kind == "c":
        raise _complex_error(name, a.dtype)
    if a.ndim == 1 and not a.dtype.names:
        notes.append(f"1-D {name} treated as one feature")
        a = a.reshape(-1, 1)
    elif a.ndim > 2 and not a.dtype.names:
        if not allow_nd:
            raise _nd_refusal(a.shape, name)
        notes.append(f"{name} of shape {a.shape} flattened to one row per sample")
    elif a.ndim > 1 and a.dtype.names:
        raise UnsupportedData(f"Structured {name} with dim {a.ndim} is not supported; pass a 1-D "
                              f"structured array (one record per row).")
    n = a.shape[0]
    k = len(a.dtype.names) if a.dtype.names else int(np.prod(a.shape[1:]))
    _check_rows_features(n, k, X.shape, name)
    rows = _sample_rows(n, k, budget, name) if chosen is None else (chosen if len(chosen) < n else None)
    sample = a[rows] if rows is not None else a
    if sample.ndim > 2:
        sample = sample.reshape(len(sample), -1)
    return _dense_table(sample, rows, n, feature_names, notes, budget, name)


def _from_sequence(X: list | tuple, budget: Budget, feature_names: Any, name: str) -> Table:
    """List (or tuple) of rows or of scalars (B28); only sampled rows are read."""
    n = len(X)
    if n == 0:
        raise UnsupportedData(f"Found array with 0 sample(s) (shape=(0,)) while a minimum of 1 is "
                              f"required: {name} is empty, nothing to check.")
    first = X[0]
    if type(first) is dict:
        raise UnsupportedData(f"{name} is a list of dict records; build a DataFrame with "
                              f"pandas.DataFrame({name}) to check it.", severity="info")
    row_like = type(first) in (list, tuple) or isinstance(first, np.ndarray)
    k = (len(first) if not isinstance(first, np.ndarray) else int(first.size)) if row_like else 1
    if row_like:
        _check_rows_features(n, k, (n, k), name)
    rows = _sample_rows(n, max(k, 1), budget, name)
    items = [X[i] for i in rows] if rows is not None else list(X)
    notes: list[str] = []
    if not row_like:
        notes.append(f"1-D {name} treated as one feature")
        column = np.fromiter(items, dtype=object, count=len(items))
        names = _final_names(None, feature_names, 1, notes)
        return _assemble([_object_column(column, names[0])], names, rows, n, notes, budget)
    for i, row in zip(rows if rows is not None else range(n), items):
        if not (type(row) in (list, tuple) or isinstance(row, np.ndarray)):
            raise UnsupportedData(f"Row {i} of {name} is a {_type_name(row)}, not a list like row 0; "
                                  f"convert {name} to a 2-D array to check it.")
        size = row.size if isinstance(row, np.ndarray) else len(row)
        if size != k:
            raise UnsupportedData(f"Rows of {name} have different lengths (row 0 has {k}, row {i} has "
                                  f"{size}); pad or trim them to one length to check {name}.")
    plain = all(type(v) in (int, float, bool) for v in (first.tolist() if isinstance(first, np.ndarray) else first))
    if plain:
        try:
            arr = np.array(items)
        except (ValueError, TypeError):  # a nested list in a later row
            arr = np.empty(0, dtype=object)
        if arr.dtype.kind in "biuf" and arr.ndim == 2:
            return _dense_table(arr, rows, n, feature_names, notes, budget, name)
    flat = (v for row in items for v in (row.ravel().tolist() if isinstance(row, np.ndarray) else row))
    obj = np.fromiter(flat, dtype=object, count=len(items) * k).reshape(len(items), k)
    return _dense_table(obj, rows, n, feature_names, notes, budget, name)


def _from_pandas(X: Any, budget: Budget, feature_names: Any, name: str) -> Table:
    kind = type(X).__name__
    if kind not in ("DataFrame", "Series"):
        raise UnsupportedData(f"{name} is a pandas {kind}; pass a DataFrame or Series to check it.",
                              severity="info")
    frame = kind == "DataFrame"
    n = int(X.shape[0])
    k = int(X.shape[1]) if frame else 1
    _check_rows_features(n, k, tuple(X.shape), name)
    rows = _sample_rows(n, k, budget, name)
    sub = X.iloc[rows] if rows is not None else X
    notes: list[str] = []
    if frame:
        own = [_label_text(c, j) for j, c in enumerate(X.columns.tolist())]
        series = [sub.iloc[:, j] for j in range(k)]
    else:
        own = [_label_text(X.name, 0) if X.name is not None else name]
        series = [sub]
    names = _final_names(own, feature_names, k, notes)
    cols = []
    for j, s in enumerate(series):
        cols.append(_pandas_column(s, names[j]))
        budget.checkpoint()
    return _assemble(cols, names, rows, n, notes, budget)


def _pandas_column(s: Any, name: str) -> _Col:
    """One pandas Series (a sampled copy or a read-only view) -> column (B4, B6)."""
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, pd.SparseDtype):
        return _pandas_column(s.sparse.to_dense(), name)
    if isinstance(dtype, pd.CategoricalDtype):
        return _categorical_column(s, name)
    if pd.api.types.is_bool_dtype(dtype):
        return _Col(s.to_numpy(dtype=np.float64, na_value=np.nan), "bool")
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _Col(_datetime64_ns(s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()), "datetime")
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcMm":
        return _numeric_column(s.to_numpy(), name)
    if pd.api.types.is_numeric_dtype(dtype):
        if pd.api.types.is_complex_dtype(dtype):
            raise _complex_error(f"column '{name}'", dtype)
        if pd.api.types.is_integer_dtype(dtype) and isinstance(getattr(dtype, "numpy_dtype", None), np.dtype):
            col = _numeric_column(s.to_numpy(dtype=dtype.numpy_dtype, na_value=0), name)
            col.values[s.isna().to_numpy()] = np.nan
            return col
        return _Col(s.to_numpy(dtype=np.float64, na_value=np.nan), "numeric")
    if isinstance(dtype, pd.StringDtype):  # pandas 3's default text dtype: only str and NA inside
        codes, uniques = pd.factorize(s, sort=True)
        valid = codes >= 0
        return _text_from_codes(codes[valid].astype(np.int64), list(uniques), valid, name)
    return _object_column(s.to_numpy(dtype=object, na_value=None), name)


def _categorical_column(s: Any, name: str) -> _Col:
    codes = s.cat.codes.to_numpy().astype(np.float64)
    codes[codes < 0] = np.nan
    cats = s.cat.categories.tolist()
    keys = [_value_key(c, _census(c)) for c in cats]
    keys = [k if k is not None else f"o:{i}" for i, k in enumerate(keys)]
    return _Col(codes, "categorical", keys=keys)


_POLARS_EAGER = {"polars.dataframe.frame.DataFrame": "DataFrame", "polars.series.series.Series": "Series"}


def _polars_kind(tp: type) -> str | None:
    """``"DataFrame"``/``"Series"`` for polars' eager types, decided from the type (B29: they are read like
    pandas; only a ``LazyFrame`` is lazy and refused)."""
    if not (tp.__module__ or "").startswith("polars"):
        return None
    return next((kind for cls, kind in _POLARS_EAGER.items() if cls in mro_names(tp)), None)


def _polars_values(s: Any, rows: np.ndarray | None, name: str = "X") -> np.ndarray:
    """The sampled values of a polars Series as numpy (nulls: NaN for numbers, None otherwise); a copy."""
    part = s.gather(rows) if rows is not None else s
    values = np.array(part.to_numpy(), copy=True)
    if values.ndim != 1:
        raise UnsupportedData(f"{name}: column {_short(str(s.name))!r} holds arrays ({s.dtype}), one per row; "
                              f"not checked. Unnest it into one column per value to check it.", severity="info")
    return values


def _from_polars(X: Any, budget: Budget, feature_names: Any, name: str, kind: str) -> Table:
    """An eager polars DataFrame or Series (B29: only ``LazyFrame`` is lazy), read column by column on the
    sampled rows."""
    frame = kind == "DataFrame"
    n = int(X.height if frame else X.len())
    k = int(X.width) if frame else 1
    _check_rows_features(n, k, (n, k) if frame else (n,), name)
    rows = _sample_rows(n, k, budget, name)
    series = [X.to_series(j) for j in range(k)] if frame else [X]
    notes: list[str] = []
    names = _final_names([_label_text(s.name or None, j) if frame else (s.name or name)
                          for j, s in enumerate(series)], feature_names, k, notes)
    cols = []
    for j, s in enumerate(series):
        cols.append(_array_column(_polars_values(s, rows, name), names[j]))
        budget.checkpoint()
    return _assemble(cols, names, rows, n, notes, budget)


def _from_sparse(X: Any, budget: Budget, feature_names: Any, name: str) -> Table:
    shape = tuple(int(s) for s in X.shape)
    if len(shape) != 2:
        raise UnsupportedData(f"Sparse {name} with shape {shape} is not supported; expected 2-D.")
    if np.dtype(X.dtype).kind == "c":
        raise _complex_error(name, X.dtype)
    n, k = shape
    _check_rows_features(n, k, shape, name)
    rows = _sample_rows(n, k, budget, name)
    csr = X if X.format == "csr" else X.tocsr()
    sub = csr[rows] if rows is not None else csr
    dense = np.asarray(sub.toarray())
    notes = [f"sparse {name} ({X.format}): {'sampled ' if rows is not None else ''}rows densified"]
    return _dense_table(dense, rows, n, feature_names, notes, budget, name)


# --------------------------------------------------------------------------------------------------
# Dask: metadata and a few partitions only, never a full compute (issue 9)
# --------------------------------------------------------------------------------------------------
def _dask_kind(tp: type) -> str | None:
    """``"array"``, ``"frame"`` or ``"series"`` for Dask collections, else ``None``: a subclass check
    against Dask's own classes, looked up only when the type comes from a loaded ``dask`` (B30)."""
    if not _module_of(tp).startswith("dask"):
        return None
    arrays, frames = sys.modules.get("dask.array"), sys.modules.get("dask.dataframe")
    if arrays is not None and issubclass(tp, arrays.Array):
        return "array"
    if frames is not None and issubclass(tp, frames.DataFrame):
        return "frame"
    if frames is not None and issubclass(tp, frames.Series):
        return "series"
    return None


def dask_windows(lengths: Sequence[int], limit: int, budget: Budget) -> list[tuple[int, int, int]]:
    """Row runs ``(partition, start, stop)`` (positions inside the partition) to read: about ``limit``
    rows in all, one contiguous run at a random offset in each of at least :data:`DASK_MIN_PARTITIONS`
    partitions chosen at random in proportion to their length (all partitions when they hold no more
    than ``limit`` rows); a partition too short for its share leaves the rest to the next ones.

    A cluster sample: only the chosen partitions are computed. Rows of one partition are often alike
    (written together), so a rate from this sample varies more than one from ``limit`` independent rows;
    the card says how many partitions were read.
    """
    lengths = np.asarray([int(n) for n in lengths], dtype=np.int64)
    if lengths.sum() <= limit:
        return [(p, 0, int(n)) for p, n in enumerate(lengths) if n]
    rng = budget.rng()
    filled = np.flatnonzero(lengths > 0)
    mean = lengths.sum() / len(filled)
    n_parts = min(len(filled), max(DASK_MIN_PARTITIONS, int(np.ceil(limit / mean))))
    chosen = rng.choice(filled, size=n_parts, replace=False, p=lengths[filled] / lengths[filled].sum())
    out, left = [], limit
    for i, p in enumerate(chosen.tolist()):
        take = int(min(lengths[p], np.ceil(left / (n_parts - i))))
        if take:
            start = int(rng.integers(0, lengths[p] - take + 1))
            out.append((p, start, start + take))
            left -= take
    return sorted(out)


def _dask_note(windows: list[tuple[int, int, int]], n_parts: int, n_read: int, n_total: int) -> str:
    return (f"read {n_read:,} of {n_total:,} rows of the Dask array from {len(windows)} of {n_parts} partitions "
            f"(a contiguous run in each; never computed whole)")


def _from_dask_array(X: Any, budget: Budget, feature_names: Any, name: str, allow_nd: bool) -> Table:
    shape = tuple(X.shape)
    if any(not np.isfinite(d) for d in shape):
        raise UnsupportedData(f"{name} is a Dask array with unknown chunk sizes (shape {shape}); knowing them "
                              f"needs a full pass. Call {name}.compute_chunk_sizes() or pass lengths to check it.",
                              severity="info")
    if np.dtype(X.dtype).kind == "c":
        raise _complex_error(name, X.dtype)
    if len(shape) == 0:
        raise UnsupportedData(f"{name} is a 0-d Dask array (a single value), not a data set; nothing to check.",
                              severity="info")
    if len(shape) > 2 and not allow_nd:
        raise _nd_refusal(shape, name)
    n = int(shape[0])
    k = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    _check_rows_features(n, k, shape, name)
    lengths = [int(c) for c in X.chunks[0]]
    windows = dask_windows(lengths, row_limit(k, budget, name), budget)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    parts, rows = [], []
    for p, start, stop in windows:
        budget.checkpoint()
        a, b = int(offsets[p] + start), int(offsets[p] + stop)
        parts.append(np.asarray(X[a:b].compute()))
        rows.append(np.arange(a, b))
    sample = np.concatenate(parts) if len(parts) > 1 else parts[0]
    local_rows = np.concatenate(rows)
    if len(local_rows) < n:
        budget.note(_dask_note(windows, len(lengths), len(local_rows), n))
    table = _from_numpy(sample, dataclasses.replace(budget, max_rows=len(sample), max_cells=max(budget.max_cells, sample.size)),
                        feature_names, name, allow_nd)
    table.rows = local_rows if len(local_rows) < n else None
    table.n_rows_total = n
    return table


def _from_dask_frame(X: Any, budget: Budget, feature_names: Any, name: str, kind: str) -> Table:
    """A Dask DataFrame/Series: randomly chosen partitions are computed one at a time and a run of each
    kept at once (their lengths are unknown before reading). The frame's length is not counted, which
    would read every partition; the table's total is estimated from the partitions read."""
    import pandas as pd

    n_parts = int(X.npartitions)
    k = len(X.columns) if kind == "frame" else 1
    limit = row_limit(max(k, 1), budget, name)
    wanted = min(n_parts, DASK_MIN_PARTITIONS)
    chosen = np.sort(budget.rng().permutation(n_parts)[:wanted]).tolist()
    per = int(np.ceil(limit / max(wanted, 1)))
    rng = budget.rng()
    frames, windows, seen = [], [], 0
    for p in chosen:
        budget.checkpoint()
        part = X.get_partition(p).compute()
        seen += len(part)
        take = min(len(part), per)
        start = int(rng.integers(0, len(part) - take + 1)) if take else 0
        frames.append(part.iloc[start:start + take])
        windows.append((p, start, start + take, len(part)))
        del part
    sample = pd.concat(frames) if len(frames) > 1 else frames[0]
    everything = wanted == n_parts and len(sample) == seen
    estimate = seen if wanted == n_parts else int(round(seen / max(wanted, 1) * n_parts))
    noun = "DataFrame" if kind == "frame" else "Series"
    if not everything:
        budget.note(f"read {len(sample):,} rows of the Dask {noun} from {len(windows)} of {n_parts} partitions "
                    f"(a run of each; about {estimate:,} rows in all, estimated: counting them would read "
                    f"every partition); row numbers on this card count the rows read")
    table = _from_pandas(sample, dataclasses.replace(budget, max_rows=max(len(sample), 1),
                                                     max_cells=max(budget.max_cells, len(sample) * max(k, 1))),
                         feature_names, name)
    table.source_windows = windows
    if not everything:
        table.rows = np.arange(len(sample))
        table.n_rows_total = estimate
    return table


def _dask_labels(y: Any, rows: np.ndarray | None, windows: list[tuple[int, int, int]] | None) -> np.ndarray:
    """Labels of a Dask array or Series at the rows the features were read from (same partitions)."""
    kind = _dask_kind(type(y))
    if kind == "array":
        shape = tuple(y.shape)
        if any(not np.isfinite(d) for d in shape):
            raise UnsupportedData("y is a Dask array with unknown chunk sizes; labels not checked.")
        _check_label_shape(shape)
        if rows is None:
            return np.asarray(y.compute()).reshape(-1)
        return np.asarray(y[rows].compute()).reshape(-1)  # only the chunks holding these rows are computed
    if kind == "series" and windows is not None:
        import pandas as pd

        parts = []
        for p, a, b, length in windows:
            part = y.get_partition(p).compute() if p < y.npartitions else None
            if part is None or len(part) != length:
                raise UnsupportedData("y is a Dask Series partitioned differently from X, so its rows cannot be "
                                      "matched to the rows read; pass the label column of the same frame "
                                      "(ddf['label']); labels not checked.", severity="info")
            parts.append(part.iloc[a:b])
        return np.asarray(pd.concat(parts) if len(parts) > 1 else parts[0], dtype=object)
    raise UnsupportedData("y is a Dask collection that cannot be matched to the rows read from X (pass a "
                          "Dask array, or a Dask Series partitioned like X); labels not checked.", severity="info")


def _torch_refusal(X: Any, name: str) -> str | None:
    import torch

    tname = _type_name(X)
    if type(X) not in (torch.Tensor, torch.nn.Parameter):
        return f"{tname} tensors are not inspected; pass a plain tensor to check {name}."
    if X.is_meta:
        return f"Cannot copy out of meta tensor: {name} is on the 'meta' device (offloaded); not checked."
    if X.layout != torch.strided:
        return f"{name} is a sparse tensor ({X.layout}); not inspected. Pass {name}.to_dense() to check it."
    if X.is_quantized:
        return f"{name} is a quantized tensor ({X.dtype}); not inspected. Pass {name}.dequantize()."
    if getattr(X, "is_nested", False):
        return f"{name} is a nested tensor; not inspected."
    return None


def _torch_sample(X: Any, rows: np.ndarray | None) -> np.ndarray:
    """Detached CPU copy of the sampled rows as numpy (B21–B23); the user's tensor is not touched."""
    import torch

    t = X.detach()
    if rows is not None:
        t = t.index_select(0, torch.as_tensor(rows, dtype=torch.long, device=t.device))
    t = t.cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.to(torch.float32)
    return t.clone().resolve_conj().resolve_neg().numpy()


def _from_torch(X: Any, budget: Budget, feature_names: Any, name: str, allow_nd: bool) -> Table:
    reason = _torch_refusal(X, name)
    if reason:
        raise UnsupportedData(reason, severity="info")
    import torch

    if X.dtype.is_complex:
        raise _complex_error(name, X.dtype)
    shape = tuple(int(s) for s in X.shape)
    if not shape:
        raise UnsupportedData(f"{name} is a 0-d tensor (a single value), not a data set; nothing to check.",
                              severity="info")
    if len(shape) > 2 and not allow_nd:
        raise UnsupportedData(f"Found array with dim {len(shape)} (shape={shape}); expected at most 2 "
                              f"(rows × features). Reshape it with {name}.reshape(len({name}), -1) to "
                              f"check it.")
    notes: list[str] = []
    n, k = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
    _check_rows_features(n, k, shape, name)
    rows = _sample_rows(n, k, budget, name)
    arr = _torch_sample(X, rows)
    arr = arr.reshape(len(arr), k)
    if len(shape) == 1:
        notes.append(f"1-D {name} treated as one feature")
    elif len(shape) > 2:
        notes.append(f"{name} of shape {shape} flattened to one row per sample")
    table = _dense_table(arr, rows, n, feature_names, notes, budget, name)
    if X.dtype in (torch.float16, torch.bfloat16):
        table.issues.extend(Issue("float16", c, f"column '{c}' is {str(X.dtype).replace('torch.', '')} "
                                                f"(about 3 significant digits)", table.n_rows)
                            for c in table.columns)
    return table


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------
def _refuse(X: Any, name: str) -> UnsupportedData:
    """The reason an object of an unrecognised type is not read."""
    tp = type(X)
    tname = _type_name(X)
    if X is None:
        return UnsupportedData(f"{name} is None; nothing to check.", severity="info")
    if tp in (int, float, bool, complex, str, bytes) or isinstance(X, np.generic):
        return UnsupportedData(f"{name} is a single {tname} value, not a data set; nothing to check.",
                               severity="info")
    if _root_module(X) in _LAZY_ROOTS:
        return UnsupportedData(f"{name} is a {tname} (lazy or out-of-core): not read, because that could "
                               f"start a computation; only metadata is shown. Convert a sample to numpy or "
                               f"pandas to check it.", severity="info")
    if _is_stream(tp):
        return UnsupportedData(f"{name} is a stream ({tname}): not inspected, because reading it would "
                               f"consume it. Materialise a sample (e.g. a list or array) to check it.",
                               severity="info")
    names = mro_names(tp)
    if "torch.utils.data.dataloader.DataLoader" in names or "torch.utils.data.dataset.Dataset" in names:
        return UnsupportedData(f"{name} is a torch Dataset or DataLoader ({tname}): its items were not read, because "
                               f"__getitem__ is your code (it may be slow, random or have side effects, and "
                               f"randomness would move your global RNG). Pass the tensors, or a sample such as "
                               f"torch.stack([ds[i][0] for i in range(1000)]), to check it.", severity="info")
    if tp is dict:
        return UnsupportedData(f"{name} is a dict; build a DataFrame with pandas.DataFrame({name}) to "
                               f"check it.", severity="info")
    return UnsupportedData(f"{name} of type {tname} is not a supported data type (numpy array, pandas "
                           f"DataFrame/Series, scipy sparse matrix, torch tensor, list of rows); not checked.",
                           severity="info")


def prepare_features(X: Any, budget: Budget, feature_names: Any = None, *, name: str = "X",
                     allow_nd: bool = False, rows: np.ndarray | None = None, y: Any = None) -> Table:
    """Read (a sample of) ``X`` into a :class:`Table` without changing or consuming ``X``.

    Parameters
    ----------
    X : numpy array (any order, strides, byte order, structured, read-only, memmap, np.matrix),
        pandas DataFrame/Series, scipy sparse matrix/array, torch tensor or a list of rows.
    budget : the check's :class:`Budget`; rows are sampled with :meth:`Budget.sample_rows`.
    feature_names : optional column names for inputs that have none.
    name : what to call ``X`` in messages (``"X_test"``...).
    allow_nd : flatten 3-D+ inputs to one row per sample instead of refusing them.
    rows : numpy input only: the sorted row positions to read, chosen by the caller (who notes how);
        by default rows are sampled with the budget's RNG when there are too many.
    y : the labels, when known: a sample then keeps rows of every class (:data:`MIN_CLASS_ROWS`).

    Raises
    ------
    UnsupportedData
        For input that cannot be checked (complex, empty, scalar, 3-D+, streams, lazy frames...).
    """
    token = _STRATA.set(y)
    try:
        return _read_features(X, budget, feature_names, name, allow_nd, rows)
    finally:
        _STRATA.reset(token)


def _read_features(X: Any, budget: Budget, feature_names: Any, name: str, allow_nd: bool,
                   rows: np.ndarray | None) -> Table:
    tp = type(X)
    module = _module_of(tp)
    if isinstance(X, np.ndarray):
        return _from_numpy(X, budget, feature_names, name, allow_nd, rows)
    if module.startswith("pandas"):
        return _from_pandas(X, budget, feature_names, name)
    if module.startswith("scipy.sparse"):
        return _from_sparse(X, budget, feature_names, name)
    if _is_torch_tensor(tp):
        return _from_torch(X, budget, feature_names, name, allow_nd)
    if tp in (list, tuple):
        return _from_sequence(X, budget, feature_names, name)
    polars_kind = _polars_kind(tp)
    if polars_kind:
        return _from_polars(X, budget, feature_names, name, polars_kind)
    dask_kind = _dask_kind(tp)
    if dask_kind == "array":
        return _from_dask_array(X, budget, feature_names, name, allow_nd)
    if dask_kind in ("frame", "series"):
        return _from_dask_frame(X, budget, feature_names, name, dask_kind)
    raise _refuse(X, name)


def n_samples(obj: Any) -> int | None:
    """Number of rows of a supported data object, read from its shape or ``len`` (``None`` if unknown)."""
    tp = type(obj)
    module = _module_of(tp)
    try:
        if isinstance(obj, np.ndarray) or module.startswith(("pandas", "scipy.sparse")) or _is_torch_tensor(tp):
            shape = tuple(obj.shape)
            return int(shape[0]) if shape else None
        if tp in (list, tuple):
            return len(obj)
        if _polars_kind(tp):
            return int(obj.shape[0])
        if _dask_kind(tp) == "array":
            n = obj.shape[0] if obj.shape else None
            return int(n) if n is not None and np.isfinite(n) else None
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------------
def _label_array(y: Any, rows: np.ndarray | None) -> tuple[np.ndarray, list[str] | None]:
    """A 1-D copy of the labels at ``rows`` (numeric or object), plus category names for categoricals."""
    tp = type(y)
    module = _module_of(tp)
    if isinstance(y, np.ndarray):
        a = y if tp is np.ndarray else y.view(np.ndarray)
        _check_label_shape(tuple(a.shape))
        if a.dtype.names:
            raise UnsupportedData("y is a structured array; pass one label per row.")
        a = a.reshape(len(a))
        return (a[rows] if rows is not None else np.array(a, copy=True)), None
    if module.startswith("pandas") and tp.__name__ in ("Series", "DataFrame"):
        return _pandas_labels(y, rows)
    if _is_torch_tensor(tp):
        reason = _torch_refusal(y, "y")
        if reason:
            raise UnsupportedData(reason, severity="info")
        if y.dtype.is_complex:
            raise _complex_error("y", y.dtype)
        _check_label_shape(tuple(int(s) for s in y.shape))
        return _torch_sample(y, rows).reshape(-1), None
    if tp in (list, tuple):
        items = [y[i] for i in rows] if rows is not None else list(y)
        return np.fromiter(items, dtype=object, count=len(items)), None
    if _polars_kind(tp) == "Series":
        return _polars_values(y, rows), None
    raise _refuse(y, "y")


def _check_label_shape(shape: tuple[int, ...]) -> None:
    """Labels must be one value per row: shape (n,) or (n, 1)."""
    if len(shape) == 0:
        raise UnsupportedData("y is a single value (0-d), not one label per row; labels not checked.")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise UnsupportedData(f"y has shape {shape}: multi-output or one-hot labels are not checked. "
                              f"Pass one class id per row (e.g. y.argmax(axis=1)).")


def _pandas_labels(y: Any, rows: np.ndarray | None) -> tuple[np.ndarray, list[str] | None]:
    import pandas as pd

    if type(y).__name__ == "DataFrame":
        if y.shape[1] != 1:
            raise UnsupportedData(f"y is a DataFrame with {y.shape[1]} columns: multi-output labels are not "
                                  f"checked. Pass one label column (a Series).")
        y = y.iloc[:, 0]
    s = y.iloc[rows] if rows is not None else y
    dtype = s.dtype
    if isinstance(dtype, pd.SparseDtype):
        s = s.sparse.to_dense()
        dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cats = [_display(c) for c in s.cat.categories.tolist()]
        return s.cat.codes.to_numpy().astype(np.int64), cats
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return s.to_numpy(copy=True), None
    return s.to_numpy(dtype=object, na_value=None), None


def _display(value: Any) -> str:
    """A label value as text, without running user code (unknown types show their type name)."""
    kind = _census(value)
    if kind in (_BOOL, _NUMBER, _STR, _DATETIME, _TEXTLIKE):
        return str(value)
    if kind == _BYTES:
        return bytes(value).decode("latin-1")
    return f"<{_type_name(value)}>"


def _target_type(n_classes: int, n_valid: int, *, numeric: bool, non_integer: bool = False) -> str:
    if n_classes == 0:
        return "unknown"
    if numeric and non_integer and n_classes > CONTINUOUS_MIN_DISTINCT:
        return "continuous"
    if numeric and not non_integer and n_classes > max(100, n_valid // 2):
        return "continuous"  # an integer target with mostly distinct values: a count or an id, not classes
    return "binary" if n_classes <= 2 else "multiclass"


def _numeric_labels(a: np.ndarray, style: str) -> Labels:
    """Numeric labels; ``style`` (bool / int / float) decides how class names are written."""
    with np.errstate(all="ignore"):
        values = a.astype(np.float64)
    if a.dtype.kind in "biu":  # classes of the integers themselves: ids above 2**53 would merge as floats (Q4)
        valid = np.ones(len(a), dtype=bool)
        uniq, inv = np.unique(a, return_inverse=True)
        codes = inv.reshape(-1).astype(np.int64)
        non_integer = False
    else:
        valid = np.isfinite(values)
        codes = np.full(len(values), -1, dtype=np.int64)
        uniq, inv = np.unique(values[valid], return_inverse=True)
        codes[valid] = inv.reshape(-1)
        non_integer = bool(np.any(uniq != np.round(uniq)))
    ttype = _target_type(len(uniq), int(valid.sum()), numeric=True, non_integer=non_integer)
    if ttype == "continuous":
        classes: list[str] = []
    elif style == "bool":
        classes = [str(bool(u)) for u in uniq]
    elif style == "int":
        classes = [str(int(u)) for u in uniq]
    else:  # written in the labels' own precision: float32 0.1 is "0.1", not "0.10000000149011612"
        scalar = a.dtype.type if a.dtype.kind == "f" else float
        classes = [str(scalar(u)) for u in uniq]
    values[~valid] = np.nan
    return Labels(codes, classes, int(np.count_nonzero(~valid)), ttype, values)


def _text_labels(keys: list[str | None], shown: dict[str, str]) -> Labels:
    codes_f, uniq_keys = _codes_from_keys(keys)
    codes = np.nan_to_num(codes_f, nan=-1).astype(np.int64)
    classes = [shown[k] for k in uniq_keys]
    if len(set(classes)) < len(classes):  # e.g. 1 and "1": show text labels quoted
        classes = [repr(shown[k]) if k.startswith("s:") else shown[k] for k in uniq_keys]
    n_missing = int(np.count_nonzero(codes < 0))
    return Labels(codes, classes, n_missing, _target_type(len(classes), len(keys) - n_missing, numeric=False))


def _object_labels(a: np.ndarray) -> Labels:
    kinds = _census_all(a)
    found = {int(k) for k in np.unique(kinds)} - {_MISSING}
    if _OTHER in found:
        example = next(_type_name(v) for v, k in zip(a, kinds) if k == _OTHER)
        raise UnsupportedData(f"y holds values of type {_short(example, 40)}, which are not class labels; "
                              f"labels not checked. Pass one number or string per row.")
    if found and found <= {_BOOL, _NUMBER}:
        values = np.full(len(a), np.nan)
        values[kinds != _MISSING] = _floats(a[kinds != _MISSING])
        if found == {_BOOL}:
            return _numeric_labels(values, "bool")
        present_types = set(np.frompyfunc(type, 1, 1)(a[kinds != _MISSING]).tolist())
        int_like = all(issubclass(t, (int, np.integer, np.bool_)) for t in present_types)
        return _numeric_labels(values, "int" if int_like else "float")
    keys: list[str | None] = []
    shown: dict[str, str] = {}
    for v, k in zip(a, kinds):
        key = _value_key(v, int(k)) if k != _MISSING else None
        keys.append(key)
        if key is not None and key not in shown:
            shown[key] = _display(v)
    return _text_labels(keys, shown)


def labels_for(y: Any, table: Table, budget: Budget) -> Labels:
    """:func:`prepare_labels` for the rows of ``table``, after checking that ``y`` has one label per
    row of X; raises :class:`UnsupportedData` with a sentence saying what does not match."""
    n_y = n_samples(y)
    if n_y is not None and n_y != table.n_rows_total:
        raise UnsupportedData(f"y has {n_y:,} labels but X has {table.n_rows_total:,} rows")
    if table.source_windows is not None and _dask_kind(type(y)) != "series":
        raise UnsupportedData("X is a Dask DataFrame read from some of its partitions; pass y as a Dask Series "
                              "of the same frame (ddf['label']) so its rows can be matched; labels not checked.",
                              severity="info")
    if _dask_kind(type(y)) is not None:
        return _encode_labels(_dask_labels(y, table.rows, table.source_windows), None, budget)
    return prepare_labels(y, table.rows, budget)


def prepare_labels(y: Any, rows: np.ndarray | None, budget: Budget) -> Labels:
    """Encode the labels at ``rows`` (the table's sampled rows; ``None``: all) on a copy (B11–B13).

    Missing labels (None, NaN, pd.NA, ±inf) get code ``-1``; mixed str/int labels are kept apart
    (``1`` and ``"1"`` are two classes). Raises :class:`UnsupportedData` for multi-output labels,
    complex labels, streams and unknown types.
    """
    n = n_samples(y)
    if rows is not None and rows.size and n is not None and int(rows[-1]) >= n:
        raise UnsupportedData(f"y has {n:,} labels, fewer than the rows of X; labels not checked.")
    a, categories = _label_array(y, rows)
    return _encode_labels(a, categories, budget)


def _encode_labels(a: np.ndarray, categories: list[str] | None, budget: Budget) -> Labels:
    budget.checkpoint()
    if categories is not None:
        return _categorical_labels(a, categories)
    kind = a.dtype.kind
    if kind == "c":
        raise _complex_error("y", a.dtype)
    if kind in "Mm":
        raise UnsupportedData("y holds dates or durations, not class labels; labels not checked.")
    if kind in "biuf":
        return _numeric_labels(a, {"b": "bool", "i": "int", "u": "int"}.get(kind, "float"))
    if kind in "US":
        keys = ["s:" + str(t) if kind == "U" else "b:" + bytes(t).decode("latin-1") for t in a]
        return _text_labels(keys, {k: k[2:] for k in set(keys)})
    if kind == "O":
        return _object_labels(a)
    raise UnsupportedData(f"y has dtype {a.dtype}, which is not a label type; labels not checked.")


def _categorical_labels(codes: np.ndarray, categories: list[str]) -> Labels:
    """Keep only the categories that occur, in category order."""
    valid = codes >= 0
    used = np.unique(codes[valid])
    remap = np.full(len(categories), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    out = np.where(valid, remap[np.where(valid, codes, 0)], -1)
    classes = [categories[i] for i in used]
    n_missing = int(np.count_nonzero(~valid))
    return Labels(out.astype(np.int64), classes, n_missing,
                  _target_type(len(classes), int(valid.sum()), numeric=False))


# --------------------------------------------------------------------------------------------------
# comparing two tables (train vs test)
# --------------------------------------------------------------------------------------------------
def _column_keys(table: Table, j: int) -> tuple[np.ndarray, list[str]]:
    """Codes (float, NaN = missing) and their keys for column ``j``; numeric columns are keyed by value."""
    col = table.values[:, j]
    if j in table.categories:
        return col, table.categories[j]
    valid = ~np.isnan(col)
    uniq, inv = np.unique(col[valid], return_inverse=True)
    codes = np.full(len(col), np.nan)
    codes[valid] = inv.reshape(-1)
    return codes, [_number_key(u) for u in uniq]


def align_codes(a: Table, b: Table) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``a.values`` and ``b.values`` with coded columns put into one shared code space.

    Text and categorical codes are assigned per table, so the same string can have different codes
    in a train and a test table; after this, equal values have equal numbers in both. Numeric
    columns are left alone unless the other table coded that column. Needs equal feature counts.
    """
    if a.n_features != b.n_features:
        raise ValueError(f"Tables have {a.n_features} and {b.n_features} features; cannot align them.")
    va, vb = a.values.copy(), b.values.copy()
    for j in sorted(set(a.categories) | set(b.categories)):
        codes_a, keys_a = _column_keys(a, j)
        codes_b, keys_b = _column_keys(b, j)
        joint = {k: i for i, k in enumerate(sorted(set(keys_a) | set(keys_b)))}
        va[:, j] = _remap(codes_a, keys_a, joint)
        vb[:, j] = _remap(codes_b, keys_b, joint)
    return va, vb


def _remap(codes: np.ndarray, keys: list[str], joint: dict[str, int]) -> np.ndarray:
    lut = np.array([joint[k] for k in keys], dtype=np.float64)
    out = np.full(len(codes), np.nan)
    valid = ~np.isnan(codes)
    if lut.size:
        out[valid] = lut[codes[valid].astype(np.int64)]
    return out


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 row``, ``2 rows``, ``1,234 entries`` (pass ``many`` for irregular plurals)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def column_list(names: Sequence[str], limit: int = 5, counts: Sequence[int] | None = None) -> str:
    """``'a' (3), 'b' (1) and 4 more`` — a short, readable list of column names for summaries."""
    parts = [f"'{n}'" + (f" ({counts[i]:,})" if counts is not None else "") for i, n in enumerate(names[:limit])]
    more = len(names) - limit
    return ", ".join(parts) + (f" and {more:,} more" if more > 0 else "")
