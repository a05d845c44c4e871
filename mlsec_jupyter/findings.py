"""Findings, severities and risk cards: the data model every layer shares.

Only the standard library and numpy are imported here (DESIGN.md, layer "model").
Rendering lives in :mod:`mlsec_jupyter.render`; ``RiskCard._repr_mimebundle_`` delegates there.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .standards import references_for

CARD_MIME = "application/vnd.mlsec.riskcard+json"
CARD_VERSION = 1
#: At most this many row indices of one finding go into the card JSON (the Python object keeps all).
MAX_INDICES_IN_JSON = 1000


class Severity(enum.IntEnum):
    """Ordered severity: ``info < low < medium < high < critical``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: "Severity | str | int") -> "Severity":
        """Accept a Severity, its name in any case, or its integer value."""
        if isinstance(value, Severity):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, (int, np.integer)) and 0 <= int(value) <= 4:
            return cls(int(value))
        names = ", ".join(s.label for s in cls)
        raise ValueError(f"Unknown severity {value!r}; expected one of: {names}.")

    @property
    def label(self) -> str:
        return self.name.lower()


#: Strings and collections in the card JSON are cut to these sizes (a 100 KB column name
#: must not bloat the saved notebook).
MAX_JSON_STRING = 1000
MAX_JSON_ITEMS = 1000


def _cut(text: str) -> str:
    return text if len(text) <= MAX_JSON_STRING else text[: MAX_JSON_STRING - 1] + "…"


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into plain JSON types (NaN/inf become None),
    cutting long strings and collections."""
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_JSON_ITEMS]
        return {_cut(str(k)): _jsonable(v) for k, v in items}
    if isinstance(value, np.ndarray):
        value = value.ravel()[:MAX_JSON_ITEMS].tolist()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in list(value)[:MAX_JSON_ITEMS]]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if np.isfinite(f) else None
    if value is None:
        return None
    return _cut(value if isinstance(value, str) else str(value))


@dataclass(frozen=True)
class Finding:
    """One result of one check.

    ``indices`` are row positions (0-based) in the checked data when the finding points at rows.
    ``target`` names what was checked when a card covers several artifacts.
    ``references`` are framework ids (MITRE ATLAS ``AML.T0020``, OWASP ML Top 10 ``ML02``,
    NIST AI RMF ``MEASURE 2.7``): the check's row of :data:`~mlsec_jupyter.standards.STANDARDS`
    always comes first, followed by any extra ones given (a paper).
    """

    check: str
    severity: Severity
    title: str
    summary: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    indices: Sequence[int] = ()
    recommendation: str = ""
    references: Sequence[str] = ()
    target: str = ""  # what was checked ("X_train, y_train (train)"); the runner fills it in

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        object.__setattr__(self, "metrics", dict(self.metrics))
        object.__setattr__(self, "indices", tuple(int(i) for i in np.asarray(self.indices).ravel()))
        object.__setattr__(self, "references", references_for(self.check, tuple(str(r) for r in self.references)))

    def to_dict(self) -> dict[str, Any]:
        shown = self.indices[:MAX_INDICES_IN_JSON]
        return {
            "check": self.check,
            "severity": self.severity.label,
            "title": _cut(self.title),
            "summary": _cut(self.summary),
            "metrics": _jsonable(self.metrics),
            "indices": list(shown),
            "n_indices": len(self.indices),
            "recommendation": _cut(self.recommendation),
            "references": [_cut(str(r)) for r in self.references[:MAX_JSON_ITEMS]],
            "target": _cut(self.target),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Finding":
        """A finding back from its JSON; text fields become strings, a missing one empty (a saved
        notebook is untrusted input). Raises ``KeyError``/``ValueError``/``TypeError`` on a broken one."""
        def text(key: str) -> str:
            value = data.get(key)
            return "" if value is None else str(value)

        metrics = data.get("metrics")
        references = data.get("references")
        return cls(
            check=str(data["check"]),
            severity=Severity.parse(data["severity"]),
            title=text("title"),
            summary=text("summary"),
            metrics=metrics if isinstance(metrics, Mapping) else {},
            indices=data.get("indices") or (),
            recommendation=text("recommendation"),
            references=[str(r) for r in references] if isinstance(references, list) else (),
            target=text("target"),
        )


class CheckStatus(str, enum.Enum):
    """Life cycle of one check on one card."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (CheckStatus.PENDING, CheckStatus.RUNNING)


@dataclass
class CheckRun:
    """What happened to one check on one card: status, a one-line message, time, sampling note."""

    check: str
    target: str = ""
    status: CheckStatus = CheckStatus.PENDING
    message: str = ""
    seconds: float | None = None
    sampled: str = ""
    progress: float = 0.0  # share done while running (checks that report it), 1 once finished

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "target": _cut(self.target),
            "status": self.status.value,
            "message": _cut(self.message),
            "seconds": None if self.seconds is None else round(self.seconds, 4),
            "sampled": self.sampled,
            "progress": round(1.0 if self.status.finished else self.progress, 4),
        }


_card_counter = itertools.count(1)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else None


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    number = float(value)
    return number if np.isfinite(number) else None


class RiskCard:
    """The findings about one subject (a cell's data and models, or one scan), filled in as checks finish.

    Thread-safe: the runner adds results from worker threads while the main thread renders.
    """

    def __init__(self, subject: str, *, cell_id: str | None = None, execution_count: int | None = None,
                 card_id: str | None = None) -> None:
        self.card_id = card_id or f"mlsec-{uuid.uuid4().hex[:12]}-{next(_card_counter)}"
        self.subject = subject
        self.cell_id = cell_id
        self.execution_count = execution_count
        self.created = time.time()
        #: Findings below this severity are hidden by the renderers (they stay in ``findings``).
        self.min_severity = Severity.INFO
        #: what changed since this cell's previous run (:class:`~mlsec_jupyter.changes.Changes`), once done
        self.changes: Any = None
        self._findings: list[Finding] = []
        self._runs: list[CheckRun] = []
        self._lock = threading.RLock()

    # -- filling in -------------------------------------------------------------------------------
    def expect(self, check: str, target: str = "") -> CheckRun:
        """Announce a check that will run, so the card can show progress."""
        run = CheckRun(check=check, target=target)
        with self._lock:
            self._runs.append(run)
        return run

    def add(self, findings: Iterable[Finding]) -> None:
        with self._lock:
            self._findings.extend(findings)

    def report_progress(self, run: CheckRun, fraction: float, message: str = "") -> None:
        """A running check's share done and what it is doing (shown on the card)."""
        with self._lock:
            if not run.status.finished:
                run.progress = fraction
                run.message = message

    def finish_run(self, run: CheckRun, status: CheckStatus, *, message: str = "",
                   seconds: float | None = None, sampled: str = "") -> None:
        with self._lock:
            run.status = status
            run.message = message
            run.seconds = seconds
            run.sampled = sampled or run.sampled

    # -- reading ---------------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        """Findings sorted by severity (highest first), stable within a severity."""
        with self._lock:
            return sorted(self._findings, key=lambda f: -f.severity)

    @property
    def runs(self) -> list[CheckRun]:
        with self._lock:
            return [CheckRun(**vars(r)) for r in self._runs]

    @property
    def status(self) -> str:
        with self._lock:
            return "done" if all(r.status.finished for r in self._runs) else "running"

    @property
    def progress(self) -> float:
        with self._lock:
            if not self._runs:
                return 1.0
            return sum(1.0 if r.status.finished else r.progress for r in self._runs) / len(self._runs)

    def visible(self) -> tuple[list[Finding], int]:
        """Findings at or above :attr:`min_severity`, and how many are hidden below it."""
        found = self.findings
        shown = [f for f in found if f.severity >= self.min_severity]
        return shown, len(found) - len(shown)

    @property
    def several_targets(self) -> bool:
        """True when findings are about more than one artifact, so each must name its target."""
        with self._lock:
            return len({f.target for f in self._findings}) > 1

    @property
    def max_severity(self) -> Severity:
        found = self.findings
        return found[0].severity if found else Severity.INFO

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": CARD_VERSION,
                "card_id": self.card_id,
                "subject": _cut(self.subject),
                "cell_id": self.cell_id,
                "execution_count": self.execution_count,
                "status": self.status,
                "progress": round(self.progress, 4),
                "max_severity": self.max_severity.label,
                "min_severity": self.min_severity.label,
                "findings": [f.to_dict() for f in self.findings],
                "checks": [r.to_dict() for r in self._runs],
                **({"changes": self.changes.to_dict()} if self.changes is not None else {}),
            }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RiskCard":
        """A card back from its JSON (a saved notebook's output, a JSON report), for reports and renderers.

        Raises ``ValueError`` naming the field when ``data`` is not a risk card."""
        from .changes import Changes

        if not isinstance(data, Mapping) or not isinstance(data.get("findings"), list) \
                or not all(isinstance(f, Mapping) for f in data["findings"]):
            raise ValueError(f"Not a risk card: expected a JSON object with a 'findings' list of objects, got "
                             f"{type(data).__name__}.")
        try:
            card = cls(str(data.get("subject", "")), cell_id=_text_or_none(data.get("cell_id")),
                       execution_count=_count_or_none(data.get("execution_count")),
                       card_id=str(data.get("card_id") or "") or None)
            card.min_severity = Severity.parse(data.get("min_severity", "info"))
            card.add(Finding.from_dict(f) for f in data["findings"])
            for run in data.get("checks") or []:
                if not isinstance(run, Mapping) or "check" not in run:
                    continue  # a broken line of a saved card: the rest of the card is still read
                card._runs.append(CheckRun(check=str(run["check"]), target=str(run.get("target", "")),
                                           status=CheckStatus(run.get("status", "done")),
                                           message=str(run.get("message", "")),
                                           seconds=_finite_or_none(run.get("seconds")),
                                           sampled=str(run.get("sampled", "")),
                                           progress=_finite_or_none(run.get("progress")) or 0.0))
            if isinstance(data.get("changes"), Mapping):
                card.changes = Changes.from_dict(data["changes"])
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ValueError(f"Not a readable risk card ({type(exc).__name__}: {exc}).") from None
        return card

    # -- display ---------------------------------------------------------------------------------
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .render import card_bundle

        return card_bundle(self)

    def __repr__(self) -> str:
        from .render.text import card_text

        return card_text(self)
