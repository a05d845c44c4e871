"""A checking session: configuration, the plan from artifacts to checks, cards, cache and audit log.

Nothing here touches IPython; :mod:`mlsec_jupyter.extension` wires a session into a shell and the
public API (:mod:`mlsec_jupyter.api`) uses the same planning without a shell.
"""

from __future__ import annotations

import collections
import logging
import threading
import uuid
import weakref
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from .artifacts import Artifact, Dataset, DPTraining, Model
from .audit import AuditLog
from .checks._parallel import close_clients, parse_backend
from .checks.registry import checks_for, inputs_for
from .findings import RiskCard, Severity
from .history import CellCards, RunKey
from .runner import SLOW_MAX_ROWS, Runner, Task, default_workers
from .watch.assemble import Assembler, SplitMemory
from .watch.dp import AccountantWatch
from .watch.fingerprint import fingerprint

log = logging.getLogger("mlsec_jupyter")

#: Settings that take one of a few words.
_CHOICES = {"budget_policy": ("warn", "block"), "file_policy": ("warn", "block")}
_BOOL_WORDS = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}


#: Cards a session keeps (newest last) for %mlsec status, wait and panel.
MAX_CARDS = 64


@dataclass
class Config:
    """Settings a user can change with ``%mlsec config KEY=VALUE``."""

    auto: bool = True  # watch every cell
    time_budget: float = 30.0  # seconds per check
    sample_size: int = 200_000  # rows a check looks at, at most
    slow_sample_size: int = SLOW_MAX_ROWS  # rows a slow check (label flips, outliers) looks at, at most
    min_severity: Severity = Severity.INFO  # findings below this are hidden on cards
    audit: bool = True  # append findings to .mlsec/audit.jsonl
    workers: int = default_workers()
    budget_policy: str = "warn"  # a DP training that would exceed a privacy budget: warn (card) or block (cell not run)
    file_policy: str = "warn"  # an unsafe model file a cell would load: warn (card, cell runs) or block (not run)
    backend: str = "local"  # where heavy sweeps run: local, dask (the running client), a scheduler address, ray

    def set(self, key: str, value: str) -> None:
        """Set one key from text, validating it; raises ``ValueError`` with a fix-it message."""
        names = [f.name for f in fields(self)]
        if key not in names:
            raise ValueError(f"Unknown setting {key!r}; settings are: {', '.join(names)}.")
        current = getattr(self, key)
        text = value.strip()
        if isinstance(current, bool):
            if text.lower() not in _BOOL_WORDS:
                raise ValueError(f"{key} must be on or off, got {value!r}.")
            setattr(self, key, _BOOL_WORDS[text.lower()])
        elif isinstance(current, Severity):
            setattr(self, key, Severity.parse(text))
        elif key == "backend":
            self.backend = str(parse_backend(text))
        elif key in _CHOICES:
            if text.lower() not in _CHOICES[key]:
                raise ValueError(f"{key} must be one of {', '.join(_CHOICES[key])}, got {value!r}.")
            setattr(self, key, text.lower())
        elif isinstance(current, int):
            number = _number(key, text, int)
            low = 100 if key.endswith("sample_size") else 1
            if number < low:
                raise ValueError(f"{key} must be at least {low}, got {number}.")
            setattr(self, key, number)
        else:
            number = _number(key, text, float)
            if not number > 0:
                raise ValueError(f"{key} must be a positive number of seconds, got {value!r}.")
            setattr(self, key, number)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name).label if f.name == "min_severity" else getattr(self, f.name))
                for f in fields(self)}


def _number(key: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{key} must be a {'whole ' if kind is int else ''}number, got {text!r}.") from None


#: Inputs that are data (fingerprinted for the cache key); other plain inputs are settings.
_DATA_INPUTS = frozenset({"X", "y", "X_test", "y_test", "model"})


def _plain(value: Any) -> bool:
    """Whether ``value`` is a plain Python value whose ``repr`` identifies it (for cache keys)."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


class ResultCache:
    """Findings of checks already run on the same inputs (same objects, same sampled content)."""

    def __init__(self, size: int = 256) -> None:
        self._items: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    @staticmethod
    def key_for(task: Task) -> tuple[Any, ...] | None:
        """The cache key of a task, or ``None`` for tasks never cached: a DP training's check depends
        on its accountant's growing history and on the ledger, which identity cannot capture."""
        if "dp_state" in task.inputs:
            return None
        used = {k: v for k, v in sorted(task.inputs.items()) if k in task.spec.parameters}
        settings = {k: v for k, v in used.items() if k not in _DATA_INPUTS}  # eps=, attack=... of %mlsec probe
        if not all(_plain(v) for v in settings.values()):
            return None  # a setting we cannot key on (an array of ε...): never served from the cache
        parts = tuple((k, fingerprint(v)) for k, v in used.items() if k in _DATA_INPUTS)
        return (task.spec.id, parts, tuple((k, repr(v)) for k, v in settings.items()), task.seconds)

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _data_key(ds: Dataset) -> tuple[int, ...]:
    return (id(ds.X), id(ds.y), id(ds.test.X) if ds.test is not None else 0)


def plan(artifacts: list[Artifact]) -> list[Task]:
    """Every applicable check for every artifact; a model's training data gets the data checks, with
    the model as an input for checks that take one (``data.backdoor`` tests a trigger on it)."""
    tasks: list[Task] = []
    datasets: dict[tuple[int, ...], tuple[Dataset, Any]] = {}

    def add_dataset(ds: Dataset, model: Any = None) -> None:
        key = _data_key(ds)
        first, known_model = datasets.get(key, (ds, None))
        datasets[key] = (first, known_model if model is None else model)

    for artifact in artifacts:
        if isinstance(artifact, Model):
            inputs = inputs_for(artifact)
            tasks.extend(Task(spec, inputs, artifact.label) for spec in checks_for(artifact))
            if artifact.train is not None:
                add_dataset(artifact.train, artifact.obj)
        elif isinstance(artifact, Dataset):
            add_dataset(artifact)
        else:
            tasks.extend(Task(spec, inputs_for(artifact), artifact.label) for spec in checks_for(artifact))
    for ds, model in datasets.values():
        inputs = inputs_for(ds)
        if model is not None:
            inputs["model"] = model
        tasks.extend(Task(spec, inputs, ds.label) for spec in checks_for(ds))
    return tasks


def _link_dp_models(artifacts: list[Artifact], tasks: list[Task]) -> None:
    """Give a DP-trained model's checks its DP training (``dp_state``), so the membership audit can
    hold its measured leakage against the accounted ε."""
    dp = {a.model_name: a.state for a in artifacts if isinstance(a, DPTraining) and a.model_name}
    for task in tasks:
        model = task.inputs.get("model")
        name = next((a.name for a in artifacts if isinstance(a, Model) and a.obj is model), None)
        if name in dp and "dp_state" in task.spec.parameters:
            task.inputs = {**task.inputs, "dp_state": dp[name]}


def subject_of(artifacts: list[Artifact]) -> str:
    """A short line naming what the card is about."""
    parts = []
    for a in artifacts:
        if isinstance(a, Model) and a.train is not None:
            parts.append(f"{a.label} fitted on {a.train.name}")
        else:
            parts.append(a.label)
    return " · ".join(parts) or "scan"


def check_title(check: str) -> str:
    """A registered check's title ("Label flips"), or its id for a check no longer registered."""
    from .checks.registry import get_check, load_builtin_checks

    try:
        load_builtin_checks()
        return get_check(check).title
    except Exception:  # noqa: BLE001 - a check gone since (a saved card), or a registry that fails to load
        return check


_ACTIVE: "Session | None" = None


def active_session() -> "Session | None":
    """The session of the loaded notebook extension (``None`` when it is not loaded)."""
    return _ACTIVE


def set_active_session(session: "Session | None") -> None:
    global _ACTIVE
    _ACTIVE = session


class Session:
    """Plans, runs and records checks for one kernel (or one script)."""

    def __init__(self, config: Config | None = None, *, audit_dir: str | Path = ".mlsec") -> None:
        self.config = config or Config()
        self.cache = ResultCache()
        self.runner = Runner(self.config.workers, seconds=self.config.time_budget,
                             max_rows=self.config.sample_size, slow_max_rows=self.config.slow_sample_size,
                             cache=self.cache)
        self.runner.backend = parse_backend(self.config.backend)
        self.memory = SplitMemory()
        self.assembler = Assembler(self.memory)
        self.audit = AuditLog(audit_dir)
        self.audit_dir = Path(audit_dir)
        self.session_id = uuid.uuid4().hex[:12]  # run ids of DP trainings are unique per session
        self._ledger: Any = None
        self.dp_watch = AccountantWatch()
        self._data_keys: collections.OrderedDict[tuple, tuple[Any, str]] = collections.OrderedDict()
        self._models: collections.OrderedDict[int, tuple[Any, dict[str, Any]]] = collections.OrderedDict()
        self.ledger_errors = 0
        self._recorded: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self.cards: collections.deque[RiskCard] = collections.deque(maxlen=MAX_CARDS)
        #: called (from worker threads) with each card that has just finished: ``%mlsec panel`` listens
        self.card_done: list[Callable[[RiskCard], None]] = []
        self.audit_errors = 0
        self._audited: collections.OrderedDict[str, None] = collections.OrderedDict()  # bounded set
        self.history = CellCards()  # the cards of each cell's latest run: reports and run diffs
        self.notebook: str | None = None  # the notebook file, when the front end tells the kernel
        self._lock = threading.Lock()

    def apply_config(self) -> None:
        """Push changed settings to the runner (new checks use them)."""
        self.runner.seconds = self.config.time_budget
        self.runner.max_rows = self.config.sample_size
        self.runner.slow_max_rows = self.config.slow_sample_size
        self.runner.workers = self.config.workers
        self.runner.backend = parse_backend(self.config.backend)

    def prepare(self, artifacts: list[Artifact], *, subject: str | None = None, cell_id: str | None = None,
                execution_count: int | None = None, only: dict[str, dict[str, Any]] | None = None,
                seconds: float | None = None, max_rows: int | None = None, run_key: RunKey | None = None,
                ) -> tuple[RiskCard, Callable[[Callable[[RiskCard], None]], None]] | None:
        """Make a card listing the checks that will run; ``launch(on_update)`` starts them.

        Returns ``None`` when no check applies. Split in two so the caller can display the card
        before any worker can update it. ``only`` keeps just the named checks and gives them extra
        parameters (``{"robustness.evasion": {"attack": "pgd"}}``); ``seconds`` and ``max_rows`` are their time
        and row budgets. ``run_key`` names the cell run (and what in it made the card): the finished card is
        compared with the card of that cell's previous run (:mod:`mlsec_jupyter.history`).
        """
        for artifact in artifacts:
            if isinstance(artifact, DPTraining):
                artifact.ledger = self.ledger
                artifact.run_id = f"{self.session_id}:{artifact.run_id}"
                self._count_if_budgeted(artifact)
        tasks = plan(artifacts)
        _link_dp_models(artifacts, tasks)
        if only is None:  # a probe's rows (%mlsec probe MODEL X Y) are not what the model was fitted on
            self._remember_models(artifacts)
        else:
            tasks = [Task(t.spec, {**t.inputs, **only[t.spec.id]}, t.target, seconds, max_rows)
                     for t in tasks if t.spec.id in only]
        if not tasks:
            return None
        card = RiskCard(subject or subject_of(artifacts), cell_id=cell_id, execution_count=execution_count)
        card.min_severity = self.config.min_severity
        runs = [card.expect(t.spec.id, t.target) for t in tasks]
        self.keep(card, run_key)

        def launch(on_update: Callable[[RiskCard], None]) -> None:
            self.runner.submit(card, list(zip(tasks, runs)), self._recording(on_update))

        return card, launch

    def keep(self, card: RiskCard, run_key: RunKey | None = None) -> None:
        """Add ``card`` to the session (status, panel, reports) as made by the cell run ``run_key``; a card
        that is already done (a pre-run check's) is compared with the cell's previous run at once."""
        with self._lock:
            self.cards.append(card)
        self.history.add(card, run_key)
        if card.status == "done":
            self._compare_with_previous(card)

    def report_cards(self) -> list[RiskCard]:
        """The cards of every cell's latest run this session (and of scans made outside cells), in the
        order they first appeared."""
        return self.history.cards()

    def _compare_with_previous(self, card: RiskCard) -> None:
        previous = self.history.previous_of(card)
        if previous is None or previous.status != "done":
            return
        from .changes import compare

        try:
            card.changes = compare(previous, card)
        except Exception:  # noqa: BLE001 - a diff (a user check's odd finding) must not stop the card
            log.debug("mlsec run diff failed", exc_info=True)

    def _remember_models(self, artifacts: list[Artifact]) -> None:
        """Remember (weakly: nothing here keeps a model or its data alive) what each model was fitted
        and evaluated on, so ``%mlsec probe MODEL`` can find its data later."""
        for a in artifacts:
            if not isinstance(a, Model) or a.train is None:
                continue
            parts = {"X": a.train.X, "y": a.train.y,
                     "X_test": None if a.test is None else a.test.X, "y_test": None if a.test is None else a.test.y}
            try:
                refs = {k: (None if v is None else weakref.ref(v)) for k, v in parts.items()}
                model = weakref.ref(a.obj)
            except TypeError:  # lists and other objects without weak references: not remembered
                continue
            with self._lock:
                self._models[id(a.obj)] = (model, refs)
                while len(self._models) > 32:
                    self._models.popitem(last=False)

    def fitted_on(self, model: Any) -> dict[str, Any] | None:
        """The data ``model`` was last seen fitted on (``X``, ``y``, ``X_test``, ``y_test``), or ``None``."""
        with self._lock:
            known = self._models.get(id(model))
        if known is None or known[0]() is not model:
            return None
        data = {k: (None if r is None else r()) for k, r in known[1].items()}
        return data if data["X"] is not None else None

    def data_key(self, X: Any) -> str:
        """The privacy-ledger key of training data: :func:`provenance.fingerprint` of its content,
        remembered for torch tensors by (identity, in-place version counter, shape), so the check
        before every training cell does not hash the same tensor again on the main thread."""
        from .provenance import fingerprint

        version = getattr(X, "_version", None)  # torch bumps it on every in-place change
        memo_key = (id(X), version, tuple(getattr(X, "shape", ()))) if isinstance(version, int) else None
        with self._lock:
            known = self._data_keys.get(memo_key) if memo_key is not None else None
        if known is not None and known[0]() is X:  # the same live object, not a new one at a reused id
            return known[1]
        key = fingerprint(X)
        if memo_key is not None:
            try:
                ref = weakref.ref(X)
            except TypeError:
                return key
            with self._lock:
                self._data_keys[memo_key] = (ref, key)
                while len(self._data_keys) > 16:
                    self._data_keys.popitem(last=False)
        return key

    @property
    def ledger(self) -> Any:
        """The privacy ledger under ``.mlsec/privacy/`` (created on first use)."""
        if self._ledger is None:
            from .privacy.ledger import Ledger

            self._ledger = Ledger(self.audit_dir / "privacy")
        return self._ledger

    def _recording(self, on_update: Callable[[RiskCard], None]) -> Callable[[RiskCard], None]:
        def update(card: RiskCard) -> None:
            self._record_dp(card)  # as soon as the DP finding is there, not when slow checks end
            first = card.status == "done" and self._first_completion(card)
            if first:
                self._compare_with_previous(card)
            if first and self.config.audit:
                try:
                    self.audit.append_card(card)
                except OSError:
                    self.audit_errors += 1
            on_update(card)
            if first:
                for listener in list(self.card_done):
                    try:
                        listener(card)
                    except Exception:  # noqa: BLE001 - a listener (a panel) must not break the checks
                        pass

        return update

    def _record_dp(self, card: RiskCard) -> None:
        """Write every DP training on the card into the ledger of its data (DESIGN: findings → ledger),
        once per finding. An entry is only replaced by a history at least as long: a history only
        grows, so a shorter one is an older reading that finished late."""
        for f in card.findings:
            m = f.metrics
            if f.check != "privacy.dp_budget" or not m.get("dataset_key") or not m.get("history"):
                continue
            with self._lock:
                if id(f) in self._recorded:
                    continue
                self._recorded[id(f)] = f  # holding the finding keeps its id from being reused
                while len(self._recorded) > 256:
                    self._recorded.popitem(last=False)
            history = [tuple(h) for h in m["history"]]
            try:
                stored = {e.run_id: e for e in self.ledger.entries(m["dataset_key"])}.get(m["run_id"])
                if stored is not None and sum(t for *_, t in stored.history) > sum(t for *_, t in history):
                    continue
                self.ledger.record(m["dataset_key"], run_id=m["run_id"], history=history,
                                   delta_hint=m.get("delta"), label=card.subject, source="opacus")
            except Exception:  # a full disk or a locked file must not break the card; %mlsec status says it
                self.ledger_errors += 1

    def _count_if_budgeted(self, artifact: DPTraining) -> None:
        """Write a DP training on data with a privacy budget into the ledger now, on the calling thread (the
        cell's post-run hook), so the next training's budget check counts it even while this card's checks
        still wait in the queue or are cancelled. Its card records the same entry again when done (the same
        run id: replaced, not added). Data without a budget is left to the card (no fingerprint here)."""
        try:
            ledger = self.ledger
            history = [(float(s), float(q), int(t)) for s, q, t in list(getattr(artifact.state, "history", []) or [])]
            if not history or artifact.train is None or not ledger.keys():
                return
            key = self.data_key(artifact.train.X)
            limit = ledger.budget(key)
            if limit is not None:
                ledger.record(key, run_id=artifact.run_id, history=history, delta_hint=limit[1],
                              label=artifact.label, source="opacus")
        except Exception:  # noqa: BLE001 - the card's own record still follows; %mlsec status counts failures
            self.ledger_errors += 1

    def _first_completion(self, card: RiskCard) -> bool:
        with self._lock:
            if card.card_id in self._audited:
                return False
            self._audited[card.card_id] = None
            while len(self._audited) > 1024:
                self._audited.popitem(last=False)
            return True

    def close(self) -> None:
        self.runner.shutdown()
        close_clients()
        self.memory.clear()
        self.cache.clear()


__all__ = ["Config", "ResultCache", "Session", "active_session", "check_title", "plan", "set_active_session",
           "subject_of"]
