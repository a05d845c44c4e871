"""The audit log: one JSON line per finding and per check that did not finish normally.

Lines go to ``.mlsec/audit.jsonl`` beside the notebook. Each line is written with a single
``os.write`` on a file opened with ``O_APPEND`` (so concurrent kernels never interleave inside a
line), under an advisory ``flock``, then ``fsync``-ed. The file is created with mode 0600 and
never through a symlink. Readers skip a torn last line (reliability L9, S5). Only aggregates go in:
metrics, counts and titles, never row contents or row indices (S4).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from .findings import RiskCard, _jsonable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

AUDIT_FILE = "audit.jsonl"


class AuditLog:
    """Append-only JSON-lines log of findings."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / AUDIT_FILE

    def records_for(self, card: RiskCard) -> list[dict[str, Any]]:
        base = {"time": round(time.time(), 3), "card_id": card.card_id, "subject": card.subject,
                "cell_id": card.cell_id, "execution_count": card.execution_count}
        rows = [{**base, "kind": "finding", "check": f.check, "severity": f.severity.label, "title": f.title,
                 "summary": f.summary, "metrics": _jsonable(f.metrics), "n_indices": len(f.indices),
                 "references": list(f.references)} for f in card.findings]
        rows += [{**base, "kind": "check", "check": r.check, "status": r.status.value, "message": r.message,
                  "target": r.target} for r in card.runs if r.status.value not in ("done", "pending", "running")]
        return rows

    def append_card(self, card: RiskCard) -> int:
        """Append the card's findings; returns the number of lines written."""
        rows = self.records_for(card)
        if rows:
            self._append("".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows))
        return len(rows)

    def _append(self, text: str) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            data = text.encode("utf-8")
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the lock


def read_audit(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the records of an audit log, skipping a torn or corrupt line instead of failing."""
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record
    except FileNotFoundError:
        return
