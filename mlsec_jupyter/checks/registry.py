"""The check registry: a check is one pure function registered by id.

A check module does::

    @register_check("data.integrity", applies_to="dataset", title="Data integrity")
    def integrity(*, X, y=None, budget: Budget) -> list[Finding]:
        ...

and nothing else is edited: :func:`load_builtin_checks` imports every module under
``mlsec_jupyter.checks`` whose name does not start with an underscore. Check modules import heavy
libraries (scikit-learn, torch) inside their functions, so loading the registry stays cheap.

The function receives keyword inputs taken from an artifact (see :func:`inputs_for`) or given
directly through :func:`run_check`, plus a :class:`~mlsec_jupyter.checks.budget.Budget`.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import threading
from dataclasses import dataclass
from typing import Any, Callable, Literal

from ..artifacts import Artifact, Dataset, DPTraining, Kind, Model, ModelFile, classify, is_sklearn_fitted
from ..findings import Finding
from .budget import Budget

AppliesTo = Literal["dataset", "model", "model_file", "dp_training"]
Cost = Literal["fast", "slow"]

#: What a check may require, and how to tell whether its inputs provide it.
_REQUIREMENTS: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "labels": ("labels (y)", lambda kw: kw.get("y") is not None),
    "test_data": ("a held-out test set", lambda kw: kw.get("X_test") is not None),
    "predict_proba": (
        "a model with predict_proba",
        lambda kw: callable(getattr(type(kw.get("model")), "predict_proba", None)),
    ),
    "training_data": ("the data the model was fitted on", lambda kw: kw.get("X") is not None),
    "dp_state": ("a DP-SGD training (an Opacus accountant's history)", lambda kw: kw.get("dp_state") is not None),
}


def _unfitted(model: Any) -> bool:
    """A scikit-learn estimator that is not fitted (reliability B31), on positive evidence only: a class
    from scikit-learn, or one that defines ``__sklearn_is_fitted__``. Other estimators may keep their
    fitted state in private attributes (wrappers), and torch modules always run."""
    if model is None or classify(model) is not Kind.SKLEARN_MODEL:
        return False
    tp = type(model)
    ours = (tp.__module__ or "").startswith("sklearn.") or callable(getattr(tp, "__sklearn_is_fitted__", None))
    return ours and not is_sklearn_fitted(model)


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its id, what it applies to, what it needs and how costly it is."""

    id: str
    func: Callable[..., list[Finding]]
    applies_to: AppliesTo
    title: str
    requires: tuple[str, ...] = ()
    cost: Cost = "fast"
    parameters: frozenset[str] = frozenset()

    def missing(self, inputs: dict[str, Any]) -> str | None:
        """Why this check cannot run on these inputs (``None`` if it can)."""
        if self.applies_to == "model" and _unfitted(inputs.get("model")):
            return f"needs a fitted model ({type(inputs['model']).__name__} is not fitted yet: call fit first)"
        for need in self.requires:
            text, present = _REQUIREMENTS[need]
            if not present(inputs):
                return f"needs {text}"
        return None

    def accepted(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The subset of ``inputs`` this check's function takes."""
        return {k: v for k, v in inputs.items() if k in self.parameters}


_REGISTRY: dict[str, CheckSpec] = {}
_LOCK = threading.RLock()
_loaded = False


def register_check(check_id: str, *, applies_to: AppliesTo, title: str,
                   requires: tuple[str, ...] = (), cost: Cost = "fast",
                   force: bool = False) -> Callable[[Callable[..., list[Finding]]], Callable[..., list[Finding]]]:
    """Decorator registering a pure check function under ``check_id``.

    Raises ``ValueError`` if the id is taken (pass ``force=True`` to replace it) or a requirement
    is unknown.
    """
    unknown = [r for r in requires if r not in _REQUIREMENTS]
    if unknown:
        raise ValueError(f"Unknown requirement(s) {unknown} for check {check_id!r}; "
                         f"known: {sorted(_REQUIREMENTS)}.")
    if cost not in ("fast", "slow"):
        raise ValueError(f"cost must be 'fast' or 'slow', got {cost!r}.")

    def decorate(func: Callable[..., list[Finding]]) -> Callable[..., list[Finding]]:
        params = frozenset(inspect.signature(func).parameters)
        if "budget" not in params:
            raise TypeError(f"Check {check_id!r}: {func.__qualname__} must take a keyword argument 'budget'.")
        spec = CheckSpec(id=check_id, func=func, applies_to=applies_to, title=title,
                         requires=tuple(requires), cost=cost, parameters=params - {"budget"})
        with _LOCK:
            if check_id in _REGISTRY and not force and _REGISTRY[check_id].func is not func:
                raise ValueError(f"A check with id {check_id!r} is already registered "
                                 f"({_REGISTRY[check_id].func.__module__}); pass force=True to replace it.")
            _REGISTRY[check_id] = spec
        return func

    return decorate


def unregister_check(check_id: str) -> None:
    with _LOCK:
        _REGISTRY.pop(check_id, None)


def load_builtin_checks() -> None:
    """Import every public module under ``mlsec_jupyter.checks`` once (they register themselves)."""
    global _loaded
    with _LOCK:
        if _loaded:
            return
        package = importlib.import_module(__package__)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{__package__}."):
            leaf = info.name.rsplit(".", 1)[-1]
            if not leaf.startswith("_") and leaf not in {"registry", "budget"}:
                importlib.import_module(info.name)
        _loaded = True


def get_check(check_id: str) -> CheckSpec:
    load_builtin_checks()
    with _LOCK:
        try:
            return _REGISTRY[check_id]
        except KeyError:
            known = ", ".join(sorted(_REGISTRY)) or "none"
            raise KeyError(f"No check with id {check_id!r}; registered checks: {known}.") from None


def all_checks() -> list[CheckSpec]:
    load_builtin_checks()
    with _LOCK:
        return sorted(_REGISTRY.values(), key=lambda s: s.id)


def kind_of(artifact: Artifact) -> AppliesTo:
    if isinstance(artifact, Dataset):
        return "dataset"
    if isinstance(artifact, Model):
        return "model"
    if isinstance(artifact, ModelFile):
        return "model_file"
    if isinstance(artifact, DPTraining):
        return "dp_training"
    raise TypeError(f"Not an artifact: {type(artifact).__name__}")


def inputs_for(artifact: Artifact) -> dict[str, Any]:
    """The keyword inputs an artifact offers to checks."""
    if isinstance(artifact, Dataset):
        test = artifact.test
        return {"X": artifact.X, "y": artifact.y, "feature_names": artifact.feature_names,
                "X_test": None if test is None else test.X, "y_test": None if test is None else test.y,
                "path": artifact.path}
    if isinstance(artifact, Model):
        train, test = artifact.train, artifact.test
        return {"model": artifact.obj, "framework": artifact.framework,
                "X": None if train is None else train.X, "y": None if train is None else train.y,
                "X_test": None if test is None else test.X, "y_test": None if test is None else test.y}
    if isinstance(artifact, DPTraining):
        train = artifact.train
        return {"dp_state": artifact.state, "X": None if train is None else train.X,
                "ledger": artifact.ledger, "run_id": artifact.run_id}
    return {"path": artifact.path, "loader": artifact.loader}


def checks_for(artifact: Artifact) -> list[CheckSpec]:
    kind = kind_of(artifact)
    return [s for s in all_checks() if s.applies_to == kind]


def run_check(check_id: str, *, budget: Budget | None = None, **inputs: Any) -> list[Finding]:
    """Run one registered check directly, e.g. ``run_check("data.duplicates", X=X, y=y)``.

    Raises ``KeyError`` for an unknown id, ``TypeError`` for inputs the check does not take, and
    ``ValueError`` when a requirement (labels, a test set...) is missing.
    """
    spec = get_check(check_id)
    extra = sorted(set(inputs) - spec.parameters)
    if extra:
        raise TypeError(f"Check {check_id!r} got unexpected input(s) {extra}; "
                        f"it takes: {', '.join(sorted(spec.parameters))}.")
    reason = spec.missing(inputs)
    if reason:
        raise ValueError(f"Check {check_id!r} {reason}; pass it as a keyword argument.")
    return list(spec.func(**inputs, budget=budget or Budget()))
