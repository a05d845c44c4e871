"""Turn "what the cell intended" + "which names changed" into artifacts for the checks.

Runs on the main thread right after a watched cell, so it only looks at types and at plain-name
arguments; it never evaluates an expression from the cell, never calls ``len``/``repr`` on user
objects and never iterates a loader.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any, Mapping

from ..artifacts import (
    Artifact,
    Dataset,
    DPTraining,
    Kind,
    Model,
    ModelFile,
    Role,
    classify,
    framework_of,
    is_sklearn_fitted,
    torch_data_parts,
)
from .cell import Call, CellIntent

_DATA_KINDS = {Kind.ARRAY, Kind.FRAME}
#: What a load may make that becomes a data set on the card: a stream too, so the card says it was not
#: read (reliability B25) instead of staying silent.
_LOADED_KINDS = _DATA_KINDS | {Kind.STREAM}
_MODEL_KINDS = {Kind.SKLEARN_MODEL, Kind.TORCH_MODEL}


class _Ref:
    """A weak reference when the object allows one, else only its id (lists, tuples, dicts)."""

    __slots__ = ("_weak", "_id")

    def __init__(self, obj: Any) -> None:
        self._id = id(obj)
        try:
            self._weak: weakref.ref[Any] | None = weakref.ref(obj)
        except TypeError:
            self._weak = None

    def refers_to(self, obj: Any) -> bool:
        if self._weak is not None:
            return self._weak() is obj
        return self._id == id(obj)


@dataclass
class _SplitRecord:
    train: tuple[str, ...]
    test: tuple[str, ...]
    refs: dict[str, _Ref]


class SplitMemory:
    """Which names came out of which ``train_test_split``; holds only weak references."""

    def __init__(self, size: int = 32) -> None:
        self._records: list[_SplitRecord] = []
        self._size = size

    def remember(self, train: tuple[str, ...], test: tuple[str, ...], ns: Mapping[str, Any]) -> None:
        refs = {n: _Ref(ns[n]) for n in (*train, *test) if n in ns}
        self._records = [r for r in self._records if r.train != train][-self._size + 1:]
        self._records.append(_SplitRecord(train, test, refs))

    def test_names_for(self, train: tuple[str, ...], ns: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The test names split off together with ``train``, if all still name the same objects."""
        for rec in reversed(self._records):
            if rec.train[: len(train)] == train:
                names = rec.test[: len(train)]
                if all(n in ns and n in rec.refs and rec.refs[n].refers_to(ns[n]) for n in (*train, *names)):
                    return names
        return None

    def clear(self) -> None:
        self._records.clear()


def _conventional_test_names(train: tuple[str, ...], ns: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``X_train``/``y_train`` → ``X_test``/``y_test`` (also ``train``→``val``/``valid``)."""
    for alt in ("test", "val", "valid"):
        names = tuple(n.replace("train", alt) for n in train)
        if all("train" in t for t in train) and all(n in ns for n in names):
            return names
    return None


def _label_partner(x_name: str, ns: Mapping[str, Any]) -> str | None:
    """``X`` → ``y``, ``X_train`` → ``y_train``, ``x_val`` → ``y_val``."""
    if x_name[:1] in ("X", "x"):
        for head in ("y", "Y"):
            cand = head + x_name[1:]
            if cand in ns and classify(ns[cand]) is Kind.ARRAY:
                return cand
    return None


class Assembler:
    """Builds the artifacts of one watched cell."""

    def __init__(self, memory: SplitMemory) -> None:
        self.memory = memory

    def build(self, intent: CellIntent, changed: list[str], ns: Mapping[str, Any],
              *, force: bool = False) -> list[Artifact]:
        kinds = {n: classify(ns[n]) for n in changed if n in ns}
        kinds = {n: k for n, k in kinds.items() if k is not None}
        out: list[Artifact] = []
        used: set[str] = set()
        for call in intent.splits:
            out += self._from_split(call, ns, used)
        for call in intent.fits:
            out += self._from_fit(call, ns, used)
        if intent.torch_training:
            out += self._from_torch_loop(intent, ns, used)
        for call in intent.loads:
            out += _with_path(self._from_load(call, kinds, ns, used), call.path)
        out += self._model_files(intent, ns)
        if force or intent.loads:
            used.update(intent.loop_bound)  # a training loop's last batch is not a data set of its own
            out += self._leftovers(kinds, ns, used, require_2d=not force)
        return out

    # -- splits ----------------------------------------------------------------------------------
    def _from_split(self, call: Call, ns: Mapping[str, Any], used: set[str]) -> list[Artifact]:
        t = [n for n in call.targets if n in ns]
        if len(t) != len(call.targets) or len(t) < 2 or len(t) % 2:
            return []
        train_names, test_names = tuple(t[0::2][:2]), tuple(t[1::2][:2])
        train = self._dataset(train_names, ns, Role.TRAIN, call.source)
        test = self._dataset(test_names, ns, Role.TEST, call.source)
        if train is None or test is None:
            return []
        train.test = test
        self.memory.remember(train_names, test_names, ns)
        used.update(t)
        return [train, test]

    # -- fits ------------------------------------------------------------------------------------
    def _from_fit(self, call: Call, ns: Mapping[str, Any], used: set[str]) -> list[Artifact]:
        receiver = call.func.rsplit(".", 1)[0]
        model = ns.get(receiver)
        if classify(model) not in _MODEL_KINDS and len(call.targets) == 1:
            receiver = call.targets[0]  # clf = LogisticRegression().fit(X, y)
            model = ns.get(receiver)
        kind = classify(model) if model is not None else None
        if kind not in _MODEL_KINDS or not callable(getattr(type(model), "predict", None)):
            return []
        if kind is Kind.SKLEARN_MODEL and not is_sklearn_fitted(model):
            return []
        names = tuple(a for a in call.args[:2] if a is not None)
        train = None
        if names and len(names) == len(call.args[:2]) and all(n in ns for n in names):
            train = self._dataset(names, ns, Role.TRAIN, call.source)
            test_names = self.memory.test_names_for(names, ns) or _conventional_test_names(names, ns)
            if train is not None and test_names:
                train.test = self._dataset(test_names, ns, Role.TEST, "")
        used.add(receiver)
        used.update(names)
        test = train.test if train is not None else None
        return [Model(obj=model, name=receiver, framework=framework_of(kind), train=train, test=test,
                      source=call.source)]

    def _from_torch_loop(self, intent: CellIntent, ns: Mapping[str, Any], used: set[str]) -> list[Artifact]:
        models = [n for n in sorted(intent.names) if n in ns and classify(ns[n]) is Kind.TORCH_MODEL]
        loader = training_loader(intent, ns)
        train = self._from_loader(loader, ns[loader], Role.TRAIN) if loader else None
        held_out = held_out_loader(intent, ns, loader)
        test = self._from_loader(held_out, ns[held_out], Role.TEST) if held_out else None
        if train is not None:
            train.test = test
        used.update(models)
        out: list[Artifact] = [Model(obj=ns[m], name=m, framework="torch", train=train, test=test,
                                     source="training loop") for m in models]
        return out + _dp_trainings(intent, ns, models[0] if models else "", train)

    # -- loads -----------------------------------------------------------------------------------
    def _from_load(self, call: Call, kinds: dict[str, Kind], ns: Mapping[str, Any],
                   used: set[str]) -> list[Artifact]:
        targets = [n for n in call.targets if n in kinds and n not in used]
        if not targets:
            return []
        if len(targets) == 1:
            name = targets[0]
            kind, obj = kinds[name], ns[name]
            used.add(name)
            if kind is Kind.BUNCH:
                return self._from_bunch(name, obj, call.source)
            if kind is Kind.TORCH_LOADER:
                ds = self._from_loader(name, obj, Role.UNKNOWN)
                return [ds] if ds else []
            if kind is Kind.TORCH_DATASET:
                ds = self._from_torch_dataset(name, obj, Role.UNKNOWN)
                return [ds] if ds else []
            if kind in _LOADED_KINDS:
                partner = _label_partner(name, ns) if kind is Kind.ARRAY else None
                names = (name, partner) if partner else (name,)
                ds = self._dataset(names, ns, Role.UNKNOWN, call.source)
                return [ds] if ds else []
            return []
        data = [n for n in targets if kinds[n] in _LOADED_KINDS]
        used.update(data)
        ds = self._dataset(tuple(data[:2]), ns, Role.UNKNOWN, call.source) if data else None
        return [ds] if ds else []

    def _from_bunch(self, name: str, bunch: Any, source: str) -> list[Artifact]:
        try:
            X, y = bunch.get("data"), bunch.get("target")
            features = bunch.get("feature_names")
        except Exception:
            return []
        if X is None:
            return []
        names = None if features is None else [str(f) for f in list(features)[:10_000]]
        return [Dataset(X=X, y=y, name=f"{name}.data, {name}.target", source=source, feature_names=names)]

    def _from_loader(self, name: str, loader: Any, role: Role) -> Dataset | None:
        try:
            dataset = loader.dataset  # a plain attribute of torch's DataLoader; never iterate the loader
        except Exception:
            return None
        return self._from_torch_dataset(f"{name}.dataset", dataset, role)

    @staticmethod
    def _from_torch_dataset(name: str, dataset: Any, role: Role) -> Dataset | None:
        """A TensorDataset's tensors; any other map-style Dataset as itself, so the card says that its items
        were not read (B26, B27)."""
        if classify(dataset) is Kind.STREAM:  # a DataLoader over an IterableDataset: say it was not read
            return Dataset(X=dataset, name=name, role=role, source=f"torch IterableDataset ({type(dataset).__name__})")
        if classify(dataset) is not Kind.TORCH_DATASET:
            return None
        X, y = torch_data_parts(dataset)
        source = "TensorDataset" if X is not dataset else f"torch Dataset ({type(dataset).__name__})"
        return Dataset(X=X, y=y, name=name, role=role, source=source)

    @staticmethod
    def _model_files(intent: CellIntent, ns: Mapping[str, Any]) -> list[Artifact]:
        """Model files the cell loaded: a literal path, or the path / open file a name holds now that the
        cell has run (a path the cell computed itself; the extension skips files scanned before the run)."""
        from ..preflight import path_of

        out: list[Artifact] = []
        for c in intent.file_loads:
            # in a def, a name is the function's own (a parameter, a local), not the notebook's variable
            path = c.path or (None if c.enclosing else path_of(c, ns, set()))
            if path:
                out.append(ModelFile(path=path, loader=c.func, name=", ".join(c.targets), source=c.source))
        return out

    def _leftovers(self, kinds: dict[str, Kind], ns: Mapping[str, Any], used: set[str],
                   *, require_2d: bool) -> list[Artifact]:
        """New arrays/frames not claimed above, paired X↔y by name."""
        out: list[Artifact] = []
        for name, kind in kinds.items():
            if name in used or kind not in _DATA_KINDS:
                continue
            partner = _label_partner(name, ns)
            if partner in used:
                partner = None
            if require_2d and kind is Kind.ARRAY and _ndim(ns[name]) != 2:
                continue
            names = (name, partner) if partner else (name,)
            ds = self._dataset(names, ns, Role.UNKNOWN, "")
            if ds is not None:
                used.update(names)
                out.append(ds)
        return out

    @staticmethod
    def _dataset(names: tuple[str, ...], ns: Mapping[str, Any], role: Role, source: str) -> Dataset | None:
        if not names or names[0] not in ns:
            return None
        X = ns[names[0]]
        y = ns[names[1]] if len(names) > 1 and names[1] in ns else None
        if classify(X) not in _LOADED_KINDS:
            return None
        return Dataset(X=X, y=y, name=", ".join(names), role=role, source=source)


def _with_path(artifacts: list[Artifact], path: str | None) -> list[Artifact]:
    """Record the literal file path of the load call on the datasets it made (absolute, no I/O)."""
    if path:
        full = path if "://" in path else os.path.abspath(os.path.expanduser(path))
        for a in artifacts:
            if isinstance(a, Dataset) and a.path is None:
                a.path = full
    return artifacts


def _ndim(obj: Any) -> int | None:
    try:
        shape = type(obj).shape.__get__(obj)  # class-level descriptor: no instance __getattr__
        return len(shape)
    except Exception:
        return None


def training_loader(intent: CellIntent, ns: Mapping[str, Any]) -> str | None:
    """The DataLoader a training cell trains on: the one its ``backward()`` loop iterates; else, among
    the loaders it names, one called like training data before any called test/val/eval data."""
    loaders = [n for n in intent.train_iterables if classify(ns.get(n)) is Kind.TORCH_LOADER]
    if loaders:
        return loaders[0]
    named = [n for n in sorted(intent.names) if n in ns and classify(ns[n]) is Kind.TORCH_LOADER]
    held_out = ("test", "val", "eval", "holdout", "dev")
    named.sort(key=lambda n: (0 if "train" in n.lower() else 2 if any(w in n.lower() for w in held_out) else 1))
    return named[0] if named else None


def held_out_loader(intent: CellIntent, ns: Mapping[str, Any], train: str | None) -> str | None:
    """A loader the training cell names like held-out data (test/val/eval), other than ``train``."""
    words = ("test", "val", "eval", "holdout", "dev")
    named = [n for n in sorted(intent.names) if n != train and n in ns
             and classify(ns[n]) is Kind.TORCH_LOADER and any(w in n.lower() for w in words)]
    return named[0] if named else None


def dp_states_in_cell(intent: CellIntent, ns: Mapping[str, Any]) -> list[Any]:
    """The Opacus trainings (:class:`~mlsec_jupyter.privacy.opacus.DPState`) this cell drives: those
    whose optimizer, engine or model the cell names. Other accountants in the namespace belong to
    other trainings and are left alone."""
    from ..privacy.opacus import find_dp_states

    try:
        states = find_dp_states(ns)
    except Exception:  # an odd namespace must never cost the card
        return []
    def driven(state: Any) -> bool:
        holders = {*(getattr(state, "optimizers", ()) or ()), *(getattr(state, "engines", ()) or ()),
                   *(getattr(state, "models", ()) or ())}
        return bool(intent.names & holders)

    return [s for s in states if driven(s)]


def _dp_trainings(intent: CellIntent, ns: Mapping[str, Any], model_name: str, train: Dataset | None) -> list[Artifact]:
    """One :class:`DPTraining` per Opacus accountant this cell drives (read, never called)."""
    return [DPTraining(state=s, model_name=model_name, train=train, run_id=str(getattr(s, "run_id", "")))
            for s in dp_states_in_cell(intent, ns)]
