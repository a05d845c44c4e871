"""Asking a user's fitted model questions without touching it.

Checks that need a model's outputs (does a stamped trigger flip its predictions? what does its
penultimate layer look like?) go through :class:`ModelProbe`:

* a torch ``nn.Module`` is deep-copied once (:func:`private_torch_copy`: on the CPU, eval mode,
  gradients off, the user's hooks removed from the copy), and forward hooks are only ever registered
  on the copy — the user's module keeps its ``training`` flag, its hooks and its parameters, even
  while a later cell trains it;
* a scikit-learn style estimator is only asked ``predict`` (which does not change a fitted
  estimator), on numeric rows rebuilt from the check's own copy of the data;
* inference runs under ``torch.no_grad()`` in batches, and never changes torch's global settings
  (threads, seeds, default dtype).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Iterator

import numpy as np

from ..artifacts import class_has, mro_names
from .budget import Budget

#: Rows per forward pass, at most, and input values per batch, at most (wide rows get smaller batches:
#: a 3×224×224 image is 150,528 values, so 27 rows a batch; keeps a probe's memory near 16 MB an input).
BATCH_ROWS = 1024
BATCH_CELLS = 1 << 22


def rows_per_batch(row_size: int, limit: int = BATCH_ROWS) -> int:
    """How many rows of ``row_size`` values one batch may hold (at least 1)."""
    return max(1, min(limit, BATCH_CELLS // max(int(row_size), 1)))


def two_columns(logits: np.ndarray) -> np.ndarray:
    """A single binary logit ``z`` as the two logits ``[0, z]``; other outputs unchanged."""
    if logits.ndim == 2 and logits.shape[1] == 1:
        return np.hstack([np.zeros_like(logits), logits])
    return logits
_TORCH_MODULE = "torch.nn.modules.module.Module"


def is_torch_module(obj: Any) -> bool:
    """Whether ``obj`` is a torch ``nn.Module`` (decided from its type alone)."""
    return _TORCH_MODULE in mro_names(type(obj))


#: Wrappers whose wrapped module does the work (reliability B37, B38): ``torch.compile``'s module (a copy
#: of it would trace, and new input shapes would spend the user's recompile budget), DataParallel and
#: DistributedDataParallel (a copy of the wrapper would scatter to devices), Opacus' GradSampleModule.
_WRAPPERS = {
    "torch._dynamo.eval_frame.OptimizedModule": "_orig_mod",
    "torch.nn.parallel.data_parallel.DataParallel": "module",
    "torch.nn.parallel.distributed.DistributedDataParallel": "module",
    "opacus.grad_sample.grad_sample_module.GradSampleModule": "_module",
}


def unwrapped(model: Any) -> Any:
    """The module inside ``torch.compile``/DataParallel/DDP/GradSampleModule wrappers (nested ones too),
    read as plain attributes; ``model`` itself when it is not such a wrapper."""
    for _ in range(8):
        names = mro_names(type(model))
        attr = next((a for cls, a in _WRAPPERS.items() if cls in names), None)
        inner = vars(model).get("_modules", {}).get(attr) if attr else None
        if inner is None:
            inner = vars(model).get(attr) if attr else None
        if inner is None or not is_torch_module(inner):
            return model
        model = inner
    return model


def private_torch_copy(model: Any) -> Any:
    """A copy of a torch module that checks may run freely: on the CPU, in eval mode, gradients off,
    and without the user's hooks. Wrappers are copied without their wrapper (:func:`unwrapped`).

    Parameters and buffers are copied to the CPU *through* the deepcopy memo, so a GPU model never
    gets a second copy on its device (the user's next cell may need that memory). ``deepcopy`` keeps
    the hook dicts but their functions are the user's closures (a feature collector, a logger, Opacus'
    per-sample-gradient capture): every per-module hook dict of the copy is emptied, so running the
    copy never calls user code. Process-wide hooks (``torch.nn.modules.module.register_module_*``)
    cannot be avoided and are out of scope.
    """
    import torch

    model = unwrapped(model)
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach().to("cpu", copy=True), requires_grad=False)
    for b in model.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    twin = copy.deepcopy(model, memo)
    for module in twin.modules():
        if vars(module).get("_compiled_call_impl") is not None:  # net.compile() in place (B37): run eagerly
            module._compiled_call_impl = None
        for name, value in list(vars(module).items()):
            if "hooks" in name and isinstance(value, dict):
                value.clear()
    twin.eval()
    return twin


@contextlib.contextmanager
def one_openmp_thread() -> Iterator[None]:
    """Run OpenMP work (torch's intra-op threads, scikit-learn's prange loops) on one thread *of the
    calling thread*; the runner wraps every check in it, so a background check uses one core.

    OpenMP's thread count is a per-thread setting (``omp_set_num_threads`` changes the caller's ICV
    only), and threadpoolctl restores it on exit, so the user's thread and torch's settings elsewhere
    are untouched. Measured on the shared two-core test machine with one core busy: the digits MLP
    inversion took 9.5 s with torch's default two threads (every step waits for a descheduled
    OpenMP thread) against 0.19 s on one; on an idle machine one thread is as fast (0.16 s vs 0.43 s).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        yield
        return
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def seeded_clone(model: Any, rng: np.random.Generator) -> Any:
    """``sklearn.base.clone(model)`` (unfitted; the user's object is never fitted) whose unset
    ``random_state`` parameters, nested ones too, get seeds from ``rng``: with ``random_state=None``
    scikit-learn draws from the global numpy RNG, which must stay untouched."""
    from sklearn.base import clone

    twin = clone(model)
    try:
        params = twin.get_params(deep=True)
    except Exception:
        return twin
    seeds = {k: int(rng.integers(2**31 - 1)) for k, v in sorted(params.items())
             if (k == "random_state" or k.endswith("__random_state")) and v is None}
    if seeds:
        twin.set_params(**seeds)
    return twin


def can_predict(obj: Any) -> bool:
    """Whether ``obj`` is a torch module or has a ``predict`` method (on its class)."""
    return is_torch_module(obj) or class_has(type(obj), "predict")


class ModelProbe:
    """Predictions (and, for torch, penultimate representations) of a fitted model on flat rows.

    ``row_shape`` is the shape of one input row the model expects (e.g. ``(1, 8, 8)``); rows are
    given flat, as the checks hold them, and reshaped here. ``columns`` are the column names a
    pandas-trained estimator expects (``None`` for arrays).
    """

    def __init__(self, model: Any, row_shape: tuple[int, ...], columns: list[str] | None = None) -> None:
        self.is_torch = is_torch_module(model)
        self.row_shape = tuple(row_shape)
        self.columns = columns
        self._model = self._private_copy(model) if self.is_torch else model
        self._last_linear = self._find_last_linear() if self.is_torch else None

    @staticmethod
    def _private_copy(model: Any) -> Any:
        return private_torch_copy(model)

    def _find_last_linear(self) -> Any:
        import torch

        last = None
        for module in self._model.modules():
            if isinstance(module, torch.nn.Linear):
                last = module
        return last

    @property
    def has_representation(self) -> bool:
        """Whether :meth:`outputs` can return the input of the model's last linear layer."""
        return self._last_linear is not None

    def predict(self, rows: np.ndarray, budget: Budget | None = None) -> np.ndarray:
        """Predicted classes: labels from ``predict`` for estimators, argmax indices for torch."""
        if self.is_torch:
            return self.outputs(rows, budget)[1].argmax(axis=1)
        return np.asarray(self._model.predict(self.estimator_input(rows))).reshape(-1)

    def outputs(self, rows: np.ndarray, budget: Budget | None = None,
                representation: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
        """(penultimate representation or ``None``, logits) of a torch model, in batches of at most
        :data:`BATCH_CELLS` values. A model with one output (a binary classifier ending in a sigmoid's
        logit ``z``) gets the two columns ``[0, z]``, so the argmax is the class and softmax is sigmoid."""
        import torch

        dtype = next((p.dtype for p in self._model.parameters() if p.is_floating_point()), torch.float32)
        reps: list[np.ndarray] = []
        seen: list[Any] = []
        handle = None
        if representation and self._last_linear is not None:
            handle = self._last_linear.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        logits: list[np.ndarray] = []
        try:
            with torch.no_grad():
                step = rows_per_batch(int(np.prod(self.row_shape)))
                for start in range(0, len(rows), step):
                    if budget is not None:
                        budget.checkpoint()
                    chunk = rows[start:start + step].reshape((-1, *self.row_shape))
                    out = self._model(torch.as_tensor(np.ascontiguousarray(chunk), dtype=dtype))
                    if isinstance(out, (tuple, list)):  # (logits, extras) models: the first is the logits
                        out = out[0]
                    logits.append(two_columns(out.detach().double().reshape(len(chunk), -1).numpy()))
                    if seen:
                        reps.append(seen.pop().detach().double().reshape(len(chunk), -1).numpy())
        finally:
            if handle is not None:
                handle.remove()
        rep = np.concatenate(reps) if reps else None
        return rep, np.concatenate(logits) if logits else np.empty((0, 0))

    def estimator_input(self, rows: np.ndarray) -> Any:
        if self.columns is None:
            return rows.reshape((-1, *self.row_shape)) if len(self.row_shape) > 1 else rows
        import pandas as pd

        return pd.DataFrame(rows, columns=self.columns)


def probe_for(model: Any, X: Any, numeric: bool) -> tuple[ModelProbe | None, str]:
    """A :class:`ModelProbe` for ``model`` on inputs shaped like ``X``, or ``None`` and the reason.

    ``numeric`` says whether every column of the check's copy of ``X`` is a plain number (encoded
    text or categories cannot be fed back to a model).
    """
    if not can_predict(model):
        return None, f"{type(model).__name__} has no predict method and is not a torch module"
    if not numeric:
        return None, "the data has non-numeric columns, which cannot be fed back to the model as numbers"
    shape = getattr(type(X), "__module__", "")
    columns = None
    if shape.startswith("pandas"):
        names = list(getattr(X, "columns", []))
        # scikit-learn records feature names only when all are strings; otherwise it takes arrays
        columns = [str(c) for c in names] if names and all(isinstance(c, str) for c in names) else None
    row_shape = _row_shape(X)
    if row_shape is None:
        return None, f"the row shape of {type(X).__name__} is unknown"
    try:
        return ModelProbe(model, row_shape, columns), ""
    except Exception as exc:  # a model that cannot be copied (open handles, locks...)
        return None, f"the model could not be copied for probing ({type(exc).__name__})"


def _row_shape(X: Any) -> tuple[int, ...] | None:
    try:
        shape = tuple(int(s) for s in X.shape)
    except (AttributeError, TypeError, ValueError):
        return None
    return shape[1:] if len(shape) >= 2 else None
