"""Reusable test guards: a check must leave the user's objects, the global RNGs and warnings alone.

    from guards import unchanged, rng_unchanged, bad_inputs

    with unchanged(X, y), rng_unchanged():
        run_check("data.integrity", X=X, y=y)

``unchanged`` fingerprints numpy arrays (content hash, dtype, shape, strides, flags), pandas objects
(pickled content, dtypes, index, columns, attrs, flags), torch tensors (content, dtype, stride,
device, requires_grad, grad, version counter), scipy sparse matrices, scikit-learn estimators
(``__dict__`` via joblib.hash), generators (state, never advanced) and plain Python containers.
``bad_inputs()`` is the reliability catalogue B1–B14 as fresh ``(X, y)`` pairs for parametrised tests.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import pickle
import random
import types
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_fingerprint(a: np.ndarray) -> tuple:
    content = pickle.dumps(a.tolist()) if a.dtype.hasobject else np.ascontiguousarray(a).tobytes()
    flags = a.flags
    return ("ndarray", type(a).__name__, a.shape, a.dtype.descr if a.dtype.names else a.dtype.str,
            a.strides, flags.writeable, flags.c_contiguous, flags.f_contiguous, flags.owndata,
            _digest(content))


def _pandas_fingerprint(obj: Any) -> tuple:
    """Content, dtypes, axes, attrs and flags; not the pickled object, because pandas dtypes are shared
    singletons whose pickles change when pandas fills their internal caches."""
    frame = type(obj).__name__ == "DataFrame"
    columns = [obj.iloc[:, j] for j in range(obj.shape[1])] if frame else [obj]
    content = []
    for s in columns:
        extra = (s.cat.categories.tolist(), s.cat.ordered) if str(s.dtype) == "category" else None
        content.append((str(s.dtype), s.to_numpy(dtype=object).tolist(), extra))
    axes = [obj.index] + ([obj.columns] if frame else [])
    return ("pandas", type(obj).__name__, obj.shape, _digest(pickle.dumps(content)),
            tuple(_digest(pickle.dumps(a.tolist())) + str(a.dtype) for a in axes),
            repr(copy.deepcopy(obj.attrs)), obj.flags.allows_duplicate_labels, getattr(obj, "name", None))


def _torch_fingerprint(t: Any) -> tuple:
    import torch

    if type(t) not in (torch.Tensor, torch.nn.Parameter):  # FakeTensor and other subclasses: no data to read
        return ("tensor subclass", type(t).__name__, tuple(t.shape), str(t.dtype))
    if t.is_quantized:
        return ("quantized", str(t.dtype), tuple(t.shape), _digest(t.int_repr().numpy().tobytes()))
    if t.is_meta or t.layout != torch.strided:
        return ("tensor", str(t.dtype), tuple(t.shape), str(t.device), str(t.layout), t.requires_grad, t._version)
    data = t.detach().cpu().clone()
    raw = data.view(torch.int16) if data.dtype == torch.bfloat16 else data
    grad = None if t.grad is None else _digest(t.grad.detach().cpu().numpy().tobytes())
    return ("tensor", str(t.dtype), tuple(t.shape), t.stride(), str(t.device), t.requires_grad, t.is_leaf,
            t._version, grad, _digest(raw.numpy().tobytes()))


def _module_fingerprint(m: Any) -> tuple:
    """A torch module's parameters and buffers (content, requires_grad, ``.grad``, version), every
    submodule's train/eval flag and how many hooks each holds (reliability R10)."""
    tensors = tuple((name, _torch_fingerprint(t)) for name, t in [*m.named_parameters(), *m.named_buffers()])
    modes = tuple(sub.training for sub in m.modules())
    hooks = tuple(tuple(sorted((k, len(v)) for k, v in vars(sub).items() if "hooks" in k and isinstance(v, dict)))
                  for sub in m.modules())
    return ("module", type(m).__name__, tensors, modes, hooks)


def _sparse_fingerprint(m: Any) -> tuple:
    parts = [getattr(m, name, None) for name in ("data", "indices", "indptr", "row", "col", "offsets")]
    digests = tuple(None if p is None else _digest(np.ascontiguousarray(p).tobytes()) for p in parts
                    if isinstance(p, np.ndarray) or p is None)
    return ("sparse", type(m).__name__, m.shape, str(m.dtype), m.format, digests)


def fingerprint(obj: Any) -> tuple:
    """A comparable summary of everything a check must not change about ``obj``."""
    tp = type(obj)
    module = tp.__module__ or ""
    if isinstance(obj, np.ndarray):
        return _array_fingerprint(obj)
    if module.startswith("pandas"):
        return _pandas_fingerprint(obj)
    if module.startswith("torch") and "Tensor" in {c.__name__ for c in tp.__mro__}:
        return _torch_fingerprint(obj)
    if "torch.nn.modules.module.Module" in {f"{c.__module__}.{c.__qualname__}" for c in tp.__mro__}:
        return _module_fingerprint(obj)
    if module.startswith("scipy.sparse"):
        return _sparse_fingerprint(obj)
    if isinstance(obj, types.GeneratorType):
        frame = obj.gi_frame
        return ("generator", inspect.getgeneratorstate(obj), None if frame is None else frame.f_lasti)
    if callable(getattr(tp, "get_params", None)) and callable(getattr(tp, "fit", None)):
        import joblib

        return ("estimator", tp.__name__, joblib.hash(obj.__dict__))
    try:
        return ("pickle", tp.__name__, _digest(pickle.dumps(obj)))
    except Exception:
        return ("identity", tp.__name__, id(obj))


@contextlib.contextmanager
def unchanged(*objs: Any) -> Iterator[None]:
    """Assert that each object keeps its content, dtype, layout and flags across the block."""
    before = [fingerprint(o) for o in objs]
    yield
    for i, (obj, old) in enumerate(zip(objs, before)):
        new = fingerprint(obj)
        assert new == old, f"argument {i} ({type(obj).__name__}) was changed:\n before {old}\n after  {new}"


def _torch_rng() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_rng_state()


@contextlib.contextmanager
def rng_unchanged() -> Iterator[None]:
    """Assert that numpy's and Python's global RNG, torch's RNG and the warning filters are untouched."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    torch_state = _torch_rng()
    filters = list(warnings.filters)
    yield
    now = np.random.get_state()
    assert now[0] == np_state[0] and np.array_equal(now[1], np_state[1]) and now[2:] == np_state[2:], \
        "the global numpy RNG state changed"
    assert random.getstate() == py_state, "Python's global random state changed"
    if torch_state is not None:
        import torch

        assert torch.equal(torch.get_rng_state(), torch_state), "torch's global RNG state changed"
    assert list(warnings.filters) == filters, "warnings.filters changed"


# --------------------------------------------------------------------------------------------------
# the bad-input catalogue (reliability.md §4, B1–B14)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BadInput:
    """One bad input: ``make()`` returns a fresh ``(X, y)``; ``expect`` maps a check id to a phrase
    that must appear in that check's findings (title + summary + notes)."""

    id: str
    make: Callable[[], tuple[Any, Any]]
    expect: dict[str, str]


def _base(n: int = 40, k: int = 4, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, k))


def _b1() -> tuple[Any, Any]:
    X = _base()
    X[[3, 9], 1] = np.nan
    return X, np.arange(40) % 2


def _b2() -> tuple[Any, Any]:
    X = _base()
    X[5, 0], X[6, 2], X[7, 3] = np.inf, -np.inf, 1e39
    return X, np.arange(40) % 2


def _b3() -> tuple[Any, Any]:
    X = np.empty((6, 2), dtype=object)
    X[:, 0] = [1, 2.5, "3", None, "x", 4]
    X[:, 1] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    return X, np.array([0, 1, 0, 1, 0, 1])


def _b4() -> tuple[Any, Any]:
    import pandas as pd

    df = pd.DataFrame({"cat": pd.Categorical(["a", "b", None, "a"]),
                       "text": pd.array(["x", None, "y", "z"], dtype="string"),
                       "int": pd.array([1, None, 3, 4], dtype="Int64"),
                       "num": [0.5, 1.5, 2.5, 3.5]})
    df.attrs["source"] = "bad-input B4"
    return df, pd.Series([0, 1, 0, 1], name="target")


def _b5() -> tuple[Any, Any]:
    import pandas as pd

    return pd.DataFrame(np.ones((5, 4)), columns=["a", "a", 3, ("x", "y")]), None


def _b5_multi() -> tuple[Any, Any]:
    import pandas as pd

    columns = pd.MultiIndex.from_tuples([("a", 1), ("a", 1), ("b", 2)])
    X = pd.DataFrame(np.arange(15.0).reshape(5, 3), columns=columns)
    X.iloc[1, 0] = np.nan
    return X, None


def _b6() -> tuple[Any, Any]:
    import scipy.sparse as sp

    X = sp.random(60, 5, density=0.2, format="csr", random_state=3, dtype=np.float64)
    return X, np.arange(60) % 3


def _b6_frame() -> tuple[Any, Any]:
    import pandas as pd

    return pd.DataFrame({"s": pd.arrays.SparseArray([0.0, 1.0, 0.0, 2.0]), "d": [1.0, 2.0, 3.0, 4.0]}), None


def _b7_matrix() -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.matrix([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]), None


def _b17_memmap() -> tuple[Any, Any]:
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="mlsec-b17-")) / "x.dat"
    _base().tofile(path)
    return np.memmap(path, dtype=np.float64, mode="r", shape=(40, 4)), np.arange(40) % 2


def _b18_structured() -> tuple[Any, Any]:
    rows = [(float(i) * 0.5, i % 3) for i in range(40)]
    return np.array(rows, dtype=[("a", "f8"), ("b", "i4")]), np.arange(40) % 2


def _b18_bfloat16() -> tuple[Any, Any]:
    import torch

    return torch.tensor(_base(), dtype=torch.bfloat16), torch.arange(40) % 2


def _b9_tiny() -> tuple[Any, Any]:
    return _base(12), np.array([0] * 6 + [1] * 5 + [2])


def bad_inputs() -> list[BadInput]:
    """B1–B14, B17, B18 and B25 with what each data check must say about them."""
    i, d = "data.integrity", "data.duplicates"
    not_checked = "not checked"
    complex_text = "Complex data not supported"
    return [
        BadInput("B1-nan", _b1, {i: "Missing values", d: "No duplicates found"}),
        BadInput("B2-inf-float32", _b2, {i: "beyond float32", d: "No duplicates found"}),
        BadInput("B3-object-mixed", _b3, {i: "Mixed value types", d: "No duplicates found"}),
        BadInput("B4-pandas-ext", _b4, {i: "missing values (NaN) in 3 of 4 columns", d: "No duplicates found"}),
        BadInput("B5-names", _b5, {i: "'a (2)'", d: "repeat an earlier row"}),
        BadInput("B5-multiindex", _b5_multi, {i: "'a / 1'", d: "No duplicates found"}),
        BadInput("B6-sparse", _b6, {i: "rows densified", d: "rows densified"}),
        BadInput("B6-sparse-frame", _b6_frame, {i: "No integrity problems", d: "No duplicates found"}),
        BadInput("B7-matrix", _b7_matrix, {i: "np.matrix X read as a 2-D array", d: "repeats an earlier row"}),
        BadInput("B7-0d", lambda: (np.array(3.0), None), {i: "0-d array", d: "0-d array"}),
        BadInput("B7-scalar", lambda: (3.5, None), {i: "single float value", d: "single float value"}),
        BadInput("B8-no-rows", lambda: (np.empty((0, 3)), np.empty(0)), {i: "0 sample(s)", d: "0 sample(s)"}),
        BadInput("B8-no-features", lambda: (np.empty((5, 0)), None), {i: "0 feature(s)", d: "0 feature(s)"}),
        BadInput("B9-one-row", lambda: (np.array([[1.0, 2.0]]), np.array([1])),
                 {i: "only one class", d: "No duplicates found"}),
        BadInput("B9-tiny-class", _b9_tiny, {i: "single row", d: "No duplicates found"}),
        BadInput("B10-1d", lambda: (np.array([1.0, 2.0, 2.0, 5.0]), None),
                 {i: "1-D X treated as one feature", d: "1-D X treated as one feature"}),
        BadInput("B11-single-class", lambda: (_base(), np.ones(40, dtype=int)),
                 {i: "only one class", d: "No duplicates found", "data.label_flips": "only one class",
                  "data.backdoor": "single class"}),
        BadInput("B12-str-labels", lambda: (_base(6), np.array(["cat", "dog", "cat", "dog", "cat", "bird"])),
                 {i: "'bird'", d: "No duplicates found"}),
        BadInput("B12-mixed-labels", lambda: (_base(6), ["a", 1, None, "1", 1, "a"]),
                 {i: "1 of 6 labels is missing", d: "No duplicates found"}),
        BadInput("B12-nan-labels", lambda: (_base(6), np.array([0.0, np.nan, 1.0, np.nan, 1.0, 0.0])),
                 {i: "2 of 6 labels are missing", d: "No duplicates found"}),
        BadInput("B13-continuous", lambda: (_base(), np.linspace(0.0, 3.0, 40) ** 2),
                 {i: "continuous", d: "continuous", "data.label_flips": "continuous", "data.backdoor": "continuous",
                  "data.outliers": "y is continuous"}),
        BadInput("B14-length", lambda: (_base(), np.arange(35) % 2),
                 {i: "X has 40 rows but y has 35 labels", d: "y has 35 labels but X has 40 rows",
                  "data.label_flips": "y has 35 labels but X has 40 rows",
                  "data.backdoor": "y has 35 labels but X has 40 rows",
                  "data.outliers": "y has 35 labels but X has 40 rows"}),
        BadInput("B17-memmap-read-only", _b17_memmap, {i: "No integrity problems", d: "No duplicates found"}),
        BadInput("B18-fortran-big-endian", lambda: (np.asfortranarray(_base().astype(">f8")), np.arange(40) % 2),
                 {i: "No integrity problems", d: "No duplicates found"}),
        BadInput("B18-negative-strides", lambda: (_base()[::-1, ::-1], np.arange(40) % 2),
                 {i: "No integrity problems", d: "No duplicates found"}),
        BadInput("B18-structured", _b18_structured, {i: "2 columns checked", d: "No duplicates found"}),
        BadInput("B18-datetime", lambda: ((np.arange(40) * 86_400_000).astype("datetime64[ms]").reshape(40, 1),
                                          np.arange(40) % 2), {i: "1 column checked", d: "No duplicates found"}),
        BadInput("B18-float16", lambda: (_base().astype(np.float16), np.arange(40) % 2),
                 {i: "float16", d: "No duplicates found"}),
        BadInput("B18-bfloat16", _b18_bfloat16, {i: "bfloat16", d: "No duplicates found"}),
        BadInput("B18-complex", lambda: (_base().astype(np.complex128), np.arange(40) % 2),
                 {i: complex_text, d: complex_text, "data.outliers": complex_text,
                  "data.label_flips": complex_text, "data.backdoor": complex_text}),
        BadInput("B25-generator", lambda: ((r for r in [[1.0], [2.0]]), None),
                 {i: not_checked, d: not_checked, "data.outliers": "stream"}),
    ]
