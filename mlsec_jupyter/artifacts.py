"""Artifacts: what a cell made that checks look at (datasets, models, model files, DP trainings).

Objects are classified by protocol, looking only at their *type* (class attributes, module path and
MRO), never at instance attributes of unknown objects: ``repr()``, ``len()``, ``hasattr()`` and
``__getattr__`` of a user object can be slow or have side effects (reliability B30).
torch is never imported here; a torch module is recognised by its class path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Kind(str, enum.Enum):
    """What an object in the user's namespace looks like."""

    ARRAY = "array"  # numpy, pandas, torch tensor, scipy sparse, cupy... (has shape + dtype)
    FRAME = "frame"  # pandas / polars DataFrame
    BUNCH = "bunch"  # scikit-learn Bunch with data/target
    SKLEARN_MODEL = "sklearn_model"
    TORCH_MODEL = "torch_model"
    TORCH_DATASET = "torch_dataset"
    TORCH_LOADER = "torch_loader"
    STREAM = "stream"  # generators, iterable datasets: never iterated


def mro_names(tp: type) -> set[str]:
    """``module.Qualname`` of every class in the type's MRO (empty for a hostile metaclass)."""
    try:
        return {f"{c.__module__}.{c.__qualname__}" for c in tp.__mro__}
    except Exception:  # a hostile metaclass
        return set()


def class_has(tp: type, name: str) -> bool:
    """Whether any class in the MRO defines ``name`` (the instance is never asked)."""
    try:
        return any(name in vars(c) for c in tp.__mro__)
    except Exception:
        return False


def classify(obj: Any) -> Kind | None:
    """Return the :class:`Kind` of ``obj`` from its type alone, or ``None`` if it is not ML-relevant."""
    tp = type(obj)
    if tp.__module__ == "builtins":
        return None
    module = tp.__module__ or ""
    mro = mro_names(tp)
    if "torch.nn.modules.module.Module" in mro:
        return Kind.TORCH_MODEL
    if "torch.utils.data.dataloader.DataLoader" in mro:
        return Kind.TORCH_LOADER
    if "torch.utils.data.dataset.IterableDataset" in mro:
        return Kind.STREAM
    if "torch.utils.data.dataset.Dataset" in mro:
        return Kind.TORCH_DATASET
    if "sklearn.utils._bunch.Bunch" in mro:
        return Kind.BUNCH
    if module.startswith(("pandas", "polars")) and tp.__name__ in {"DataFrame", "LazyFrame"}:
        return Kind.FRAME
    if class_has(tp, "shape") and (class_has(tp, "dtype") or class_has(tp, "dtypes")):
        return Kind.ARRAY
    if class_has(tp, "fit") and class_has(tp, "get_params"):
        return Kind.SKLEARN_MODEL
    return None


def is_sklearn_fitted(model: Any) -> bool:
    """scikit-learn's protocol: ``__sklearn_is_fitted__()`` or a public attribute ending in ``_``."""
    probe = getattr(type(model), "__sklearn_is_fitted__", None)
    if callable(probe):
        try:
            return bool(probe(model))
        except Exception:
            return False
    try:
        attrs = vars(model)
    except TypeError:
        return False
    return any(k.endswith("_") and not k.startswith("__") for k in attrs)


def features_of(obj: Any) -> Any:
    """The feature array behind data a training reads: the object itself for arrays and frames,
    ``tensors[0]`` of a torch TensorDataset, and of a DataLoader's ``dataset`` (never iterated);
    ``None`` for anything else."""
    X, _ = torch_data_parts(obj)
    return X if classify(X) in (Kind.ARRAY, Kind.FRAME) else None


def torch_data_parts(obj: Any) -> tuple[Any, Any]:
    """``(X, y)`` of torch data a training reads, without iterating anything: a DataLoader's ``dataset``
    (a plain attribute), a TensorDataset's ``tensors[0]`` and ``tensors[1]``; any other map-style
    Dataset is returned whole (the checks say why its items are not read); other objects unchanged."""
    if classify(obj) is Kind.TORCH_LOADER:
        obj = vars(obj).get("dataset", obj)
    if classify(obj) is Kind.TORCH_DATASET and type(obj).__name__ == "TensorDataset" \
            and type(obj).__module__.startswith("torch."):
        tensors = vars(obj).get("tensors", ())
        if tensors:
            return tensors[0], (tensors[1] if len(tensors) > 1 else None)
    return obj, None


def framework_of(kind: Kind | None) -> str:
    if kind is Kind.TORCH_MODEL:
        return "torch"
    if kind is Kind.SKLEARN_MODEL:
        return "sklearn"
    return "other"


class Role(str, enum.Enum):
    TRAIN = "train"
    TEST = "test"
    UNKNOWN = "data"


@dataclass(eq=False)
class Dataset:
    """Features ``X`` and optional labels ``y`` that a cell made or a model was fitted on.

    ``name`` is what the user calls it ("X_train, y_train"); ``source`` is the code that made it.
    ``test`` is the held-out partner when a split or a naming convention says which it is.
    ``path`` is the file it was loaded from, when the load call named one as a string literal.
    """

    X: Any
    y: Any = None
    name: str = "data"
    role: Role = Role.UNKNOWN
    source: str = ""
    test: "Dataset | None" = None
    feature_names: list[str] | None = None
    path: str | None = None  # the file a load call read it from (absolute), when the call names one

    @property
    def label(self) -> str:
        return self.name if self.role is Role.UNKNOWN else f"{self.name} ({self.role.value})"


@dataclass(eq=False)
class Model:
    """A fitted model and, when known, the data it was fitted on."""

    obj: Any
    name: str = "model"
    framework: str = "other"
    train: Dataset | None = None
    test: Dataset | None = None
    source: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.framework})"


@dataclass(eq=False)
class ModelFile:
    """A file a cell loads with a loader that can run code (pickle, joblib, torch.load...)."""

    path: str
    loader: str
    name: str = ""
    source: str = ""

    @property
    def label(self) -> str:
        return self.path


@dataclass(eq=False)
class DPTraining:
    """A differentially private (DP-SGD) training a cell ran, read from its optimizer's accountant.

    ``state`` is a :class:`mlsec_jupyter.privacy.opacus.DPState`; ``train`` the data it trained on
    (its content fingerprint keys the privacy ledger); ``run_id`` identifies this accountant in this
    session, so a re-run of the same training replaces its ledger entry instead of adding to it.
    ``ledger`` is the session's :class:`mlsec_jupyter.privacy.ledger.Ledger` (``None``: none).
    """

    state: Any
    name: str = "DP training"
    model_name: str = ""
    train: Dataset | None = None
    run_id: str = ""
    ledger: Any = None

    @property
    def label(self) -> str:
        return f"{self.model_name or self.name} (DP-SGD)"


Artifact = Dataset | Model | ModelFile | DPTraining
