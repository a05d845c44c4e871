"""Read DP-SGD state from live Opacus objects, without importing Opacus and without changing them.

``find_dp_states(namespace)`` looks through a mapping (a notebook's user namespace) for Opacus
``PrivacyEngine``, ``DPOptimizer`` and ``GradSampleModule`` objects and returns one :class:`DPState`
per privacy *accountant* found, with the accountant's history ``[(noise_multiplier, sample_rate,
steps), …]`` copied out, so ε can be recomputed tightly (:func:`.accounting.epsilon_of_history`)
and recorded in the ledger (:mod:`.ledger`).

How objects are recognised and read (DESIGN.md "Never"; reliability B30)
-------------------------------------------------------------------------
* Types are recognised by the qualified names of the classes in their MRO
  (:func:`mlsec_jupyter.artifacts.mro_names`), never by ``isinstance`` against imported Opacus
  classes: this module never imports ``opacus`` or ``torch``, so a namespace without them costs
  nothing, and user subclasses are recognised too.
* Attributes are read from the instance ``__dict__`` only (``object.__getattribute__(obj,
  "__dict__")``), so no property, ``__getattr__`` or descriptor of a user subclass runs. Objects
  whose reading raises or looks wrong are skipped.
* The links between objects are those Opacus 1.x makes (``opacus/privacy_engine.py``,
  ``opacus/accountants/accountant.py``, ``opacus/optimizers/optimizer.py``, checked against 1.6.0):
  ``PrivacyEngine.accountant`` is the accountant; ``make_private`` attaches
  ``accountant.get_optimizer_hook_fn(sample_rate)`` as ``DPOptimizer.step_hook``, a closure whose
  cells hold the accountant (``self``) and the sample rate, which are read from ``__closure__``
  without calling it. So an optimizer and the engine that made it share one accountant and give one
  :class:`DPState` (deduplicated by the accountant's identity), and the optimizer alone is enough.
  ``PrivacyEngine.dataset`` is the data set its loader wrapped; namespace names bound to it (or to
  a ``TensorDataset``'s tensors) are reported in :attr:`DPState.data_names` so the caller can key
  the ledger by that data's fingerprint. Models are linked by parameter identity: a torch module
  (a ``GradSampleModule`` or the plain module it wraps) whose parameter tensors are the optimizer's.
  A ``GradSampleModule`` without an optimizer or engine has no accountant and gives no state.
* Nothing is called except the accountant's ``mechanism()`` classmethod when Opacus defines it
  (it returns a constant). Data loaders are never iterated and their length is never asked.
* :meth:`DPState.opacus_epsilon` calls the accountant's own ``get_epsilon(delta)`` to show Opacus'
  figure next to ours. In Opacus 1.6.0 it is read-only for all three accountants: ``RDPAccountant``
  sums ``compute_rdp`` over ``self.history``; ``PRVAccountant`` builds new PRV objects from
  ``self.history`` (``_get_dprv``) and uses no random numbers; ``GaussianAccountant`` reads
  ``self.history[-1]``. None assigns to ``self``.

``history`` is read as Opacus keeps it: consecutive steps with the same ``(σ, q)`` are one segment
(``RDPAccountant.step`` pops and re-appends the last segment, so a reader on another thread in the
middle of a step could miss it; the extension reads on the main thread, between cells).

``run_id`` is ``"opacus-"`` plus a random token given to each accountant object the first time it is
seen and kept (through a weak reference) for its lifetime in this process. ``id()`` alone is not
enough: a re-run cell frees the old engine, and a later one can get the same ``id``, which would
make the ledger *replace* a finished training instead of composing with it. An accountant restored
with ``load_checkpoint`` gets a new ``run_id`` although its history includes the old steps, so the
ledger counts those twice: ε is over-stated, the safe direction.
"""

from __future__ import annotations

import math
import secrets
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..artifacts import mro_names

__all__ = ["DPState", "find_dp_states", "is_dp_object", "run_id_of"]

ENGINE = "opacus.privacy_engine.PrivacyEngine"
OPTIMIZER = "opacus.optimizers.optimizer.DPOptimizer"
ACCOUNTANT = "opacus.accountants.accountant.IAccountant"
GRAD_SAMPLE = ("opacus.grad_sample.gsm_base.AbstractGradSampleModule",
               "opacus.grad_sample.gsm_base.AbstractGradSampleHooks")
DP_LOADER = "opacus.data_loader.DPDataLoader"
TORCH_MODULE = "torch.nn.modules.module.Module"
TENSOR_DATASET = "torch.utils.data.dataset.TensorDataset"
#: Upper bound on submodules walked when linking a model to an optimizer.
MAX_MODULES = 10_000

Segment = tuple[float, float, int]
_MISSING = object()


@dataclass
class DPState:
    """DP-SGD state of one Opacus accountant (see module docs)."""

    history: list[Segment]
    accountant: str
    noise_multiplier: float | None
    sample_rate: float | None
    max_grad_norm: float | list[float] | None
    steps: int
    run_id: str
    source: str
    expected_batch_size: int | None = None
    engines: tuple[str, ...] = ()
    optimizers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    data_names: tuple[str, ...] = ()
    _accountant_ref: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    @property
    def steps_per_epoch(self) -> int | None:
        """Opacus sets ``sample_rate = 1 / len(data_loader)``, so one epoch is ``round(1 / q)`` steps."""
        return round(1 / self.sample_rate) if self.sample_rate else None

    def planned_history(self, steps: int) -> list[Segment]:
        """The history after ``steps`` more steps at the current σ and q (for a budget check before a cell)."""
        if self.noise_multiplier is None or self.sample_rate is None:
            raise ValueError("The noise multiplier or sample rate of this Opacus training is not known yet "
                             "(no optimizer was found and no step was taken); cannot plan more steps.")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a whole number >= 0, found {steps!r}.")
        return list(self.history) + ([(self.noise_multiplier, self.sample_rate, steps)] if steps else [])

    def opacus_epsilon(self, delta: float) -> float:
        """Opacus' own ε at ``delta`` from its accountant's ``get_epsilon`` (read-only; see module docs)."""
        acc = self._accountant_ref() if self._accountant_ref is not None else None
        if acc is None:
            raise ValueError("The Opacus accountant of this state no longer exists (it was garbage-collected); "
                             "call find_dp_states again on the live namespace.")
        if not self.history:
            return 0.0  # GaussianAccountant raises IndexError on an empty history
        return float(acc.get_epsilon(delta))


# -- reading without running user code -------------------------------------------------------------------
def _attr(obj: Any, name: str) -> Any:
    """``obj.__dict__[name]`` without running properties or ``__getattr__``; ``_MISSING`` if absent."""
    try:
        d = object.__getattribute__(obj, "__dict__")
        return d[name] if isinstance(d, dict) and name in d else _MISSING
    except Exception:
        return _MISSING


def _has(names: set[str], *wanted: str) -> bool:
    return any(w in names for w in wanted)


def _type_names(obj: Any) -> set[str]:
    tp = type(obj)
    if getattr(tp, "__module__", None) == "builtins":
        return set()
    return mro_names(tp)


def is_dp_object(obj: Any) -> bool:
    """Whether ``obj`` is an Opacus engine, DP optimizer, grad-sample module or DP data loader (by type)."""
    names = _type_names(obj)
    return _has(names, ENGINE, OPTIMIZER, DP_LOADER, *GRAD_SAMPLE)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        try:  # numpy scalars; 0-d tensors are not read
            if type(x).__module__ == "numpy":
                x = float(x)
            else:
                return None
        except Exception:
            return None
    x = float(x)
    return x if math.isfinite(x) else None


def _history(acc: Any) -> list[Segment] | None:
    raw = _attr(acc, "history")
    if not isinstance(raw, list):
        return None
    out: list[Segment] = []
    for item in list(raw):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            return None
        sigma, q, steps = (_number(v) for v in item)
        if sigma is None or q is None or steps is None or not float(steps).is_integer():
            return None
        out.append((sigma, q, int(steps)))
    return out


def _mechanism(acc: Any) -> str:
    for cls in type(acc).__mro__:
        if "mechanism" in vars(cls):
            if not (cls.__module__ or "").startswith("opacus."):
                break  # a user override: do not call it
            try:
                name = acc.mechanism()
            except Exception:
                break
            return name if isinstance(name, str) else "unknown"
    return "unknown"


def _hook_accountant(optimizer: Any) -> tuple[Any, float | None]:
    """The accountant and sample rate in an Opacus ``step_hook`` closure, read without calling it."""
    hook = _attr(optimizer, "step_hook")
    try:
        names = hook.__code__.co_freevars
        cells = hook.__closure__ or ()
        values = {n: c.cell_contents for n, c in zip(names, cells)}
    except Exception:
        return None, None
    acc = values.get("self")
    if acc is None or ACCOUNTANT not in _type_names(acc):
        return None, None
    return acc, _number(values.get("sample_rate"))


# -- run ids ------------------------------------------------------------------------------------------------
_RUN_IDS: dict[int, tuple[Callable[[], Any], str]] = {}


def run_id_of(accountant: Any) -> str:
    """A stable id of this accountant object for its lifetime in this process (see module docs)."""
    key = id(accountant)
    known = _RUN_IDS.get(key)
    if known is not None and known[0]() is accountant:
        return known[1]
    if len(_RUN_IDS) > 256:
        for k in [k for k, (ref, _) in _RUN_IDS.items() if ref() is None]:
            del _RUN_IDS[k]
    try:
        ref: Callable[[], Any] = weakref.ref(accountant)
    except TypeError:
        ref = lambda: accountant
    run_id = f"opacus-{secrets.token_hex(6)}"
    _RUN_IDS[key] = (ref, run_id)
    return run_id


def _weak(obj: Any) -> Callable[[], Any]:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


# -- linking models and data -------------------------------------------------------------------------------
def _optimizer_param_ids(optimizer: Any) -> set[int]:
    inner = _attr(optimizer, "original_optimizer")
    groups = _attr(inner, "param_groups") if inner is not _MISSING else _MISSING
    ids: set[int] = set()
    if isinstance(groups, list):
        for g in groups:
            params = g.get("params") if isinstance(g, dict) else None
            if isinstance(params, list):
                ids.update(id(p) for p in params)
    return ids


def _module_param_ids(module: Any) -> set[int]:
    ids: set[int] = set()
    stack, seen = [module], set()
    while stack and len(seen) < MAX_MODULES:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        params = _attr(m, "_parameters")
        if isinstance(params, dict):
            ids.update(id(p) for p in params.values() if p is not None)
        subs = _attr(m, "_modules")
        if isinstance(subs, dict):
            stack.extend(s for s in subs.values() if s is not None)
    return ids


def _data_ids(engine: Any) -> set[int]:
    dataset = _attr(engine, "dataset")
    if dataset is _MISSING or dataset is None:
        return set()
    ids = {id(dataset)}
    if TENSOR_DATASET in _type_names(dataset):
        tensors = _attr(dataset, "tensors")
        if isinstance(tensors, tuple):
            ids.update(id(t) for t in tensors)
    return ids


# -- the search ------------------------------------------------------------------------------------------------
@dataclass
class _Found:
    accountant: Any
    engines: list[str] = field(default_factory=list)
    optimizers: list[tuple[str, Any]] = field(default_factory=list)
    hook_rate: float | None = None
    data_ids: set[int] = field(default_factory=set)


def _order(item: tuple[str, Any]) -> tuple[bool, str]:
    return (item[0].startswith("_"), item[0])


def find_dp_states(namespace: Mapping[str, Any]) -> list[DPState]:
    """One :class:`DPState` per Opacus accountant reachable from the values of ``namespace``."""
    try:
        items = sorted(((k, v) for k, v in list(namespace.items()) if isinstance(k, str)), key=_order)
    except Exception:
        return []
    found: dict[int, _Found] = {}
    modules: list[tuple[str, Any]] = []
    for name, obj in items:
        try:
            _visit(name, obj, found, modules)
        except Exception:  # an object that cannot be read is skipped
            continue
    states = []
    for f in found.values():
        try:
            state = _state(f, items, modules)
        except Exception:
            continue
        if state is not None:
            states.append(state)
    return states


def _visit(name: str, obj: Any, found: dict[int, _Found], modules: list[tuple[str, Any]]) -> None:
    names = _type_names(obj)
    if not names:
        return
    if ENGINE in names:
        acc = _attr(obj, "accountant")
        if acc is not _MISSING and ACCOUNTANT in _type_names(acc):
            f = found.setdefault(id(acc), _Found(acc))
            f.engines.append(name)
            f.data_ids |= _data_ids(obj)
    elif OPTIMIZER in names:
        acc, rate = _hook_accountant(obj)
        if acc is not None:
            f = found.setdefault(id(acc), _Found(acc))
            f.optimizers.append((name, obj))
            f.hook_rate = f.hook_rate if f.hook_rate is not None else rate
    elif TORCH_MODULE in names:
        modules.append((name, obj))


def _state(f: _Found, items: list[tuple[str, Any]], modules: list[tuple[str, Any]]) -> DPState | None:
    history = _history(f.accountant)
    if history is None:
        return None
    opt = f.optimizers[0][1] if f.optimizers else None
    sigma = _number(_attr(opt, "noise_multiplier")) if opt is not None else None
    if sigma is None and history:
        sigma = history[-1][0]
    rate = history[-1][1] if history else f.hook_rate
    clip = _attr(opt, "max_grad_norm") if opt is not None else _MISSING
    if isinstance(clip, list):
        clip = [c for c in (_number(x) for x in clip) if c is not None] or None
    else:
        clip = _number(clip) if clip is not _MISSING else None
    batch = _attr(opt, "expected_batch_size") if opt is not None else None
    batch = int(batch) if isinstance(batch, (int, float)) and not isinstance(batch, bool) else None
    params: set[int] = set()
    for _, o in f.optimizers:
        params |= _optimizer_param_ids(o)
    models = tuple(n for n, m in modules if params and _module_param_ids(m) & params)
    data = tuple(n for n, v in items if f.data_ids and id(v) in f.data_ids)
    mechanism = _mechanism(f.accountant)
    return DPState(history=history, accountant=mechanism, noise_multiplier=sigma, sample_rate=rate,
                   max_grad_norm=clip, steps=sum(s for _, _, s in history), run_id=run_id_of(f.accountant),
                   source=_source(f, models), expected_batch_size=batch, engines=tuple(f.engines),
                   optimizers=tuple(n for n, _ in f.optimizers), models=models, data_names=data,
                   _accountant_ref=_weak(f.accountant))


def _source(f: _Found, models: tuple[str, ...]) -> str:
    parts = [f"PrivacyEngine {n!r}" for n in f.engines[:1]]
    parts += [f"DPOptimizer {n!r}" for n, _ in f.optimizers[:1]]
    parts += [f"model {n!r}" for n in models[:1]]
    return "opacus " + ", ".join(parts)
