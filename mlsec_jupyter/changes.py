"""What changed between two runs of the same cell: new and resolved findings, severities, headline metrics.

When a cell is run again, its new card is compared with the card of its previous run
(:meth:`mlsec_jupyter.session.Session` keeps one per cell), and the card shows the result:
"New: high Label flips", "Resolved: medium Train/test overlap", "ε 2.9 → 4.1", "exact duplicates
5 → 8 (+3)". Standard library only (DESIGN.md, layer "model").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .findings import CheckStatus, Finding, RiskCard, Severity, _cut

#: Metrics worth a line when they change, with the words a card uses for them. Counts get "(+3)".
HEADLINE_METRICS: dict[str, str] = {
    "n_rows": "rows",
    "nan_count": "missing values",
    "inf_count": "infinite values",
    "exact_duplicates": "exact duplicates",
    "conflicting_label_duplicates": "duplicates with conflicting labels",
    "near_duplicates": "near-duplicates",
    "train_test_overlap": "train/test overlap rows",
    "outlier_rate": "outlier rate",
    "estimated_flip_rate": "estimated label-flip rate",
    "suspect_rate": "backdoor suspect rate",
    "epsilon": "ε",
    "auc": "membership-attack AUC",
    "epsilon_lower_bound": "audited ε lower bound",
    "clean_accuracy": "clean accuracy",
    "robust_accuracy": "robust accuracy",
    "accuracy": "accuracy under noise",
    "fidelity": "extraction fidelity",
    "mean_similarity": "inversion similarity",
    "unsafe_globals": "unsafe globals",
}
#: A list metric is compared at its last (hardest) point, named by its companion list.
_AXIS = {"robust_accuracy": ("eps", "ε"), "accuracy": ("sigma", "σ"), "fidelity": ("queries", "queries")}
_COUNTS = {"n_rows", "nan_count", "inf_count", "exact_duplicates", "conflicting_label_duplicates",
           "near_duplicates", "train_test_overlap", "unsafe_globals"}
#: Smaller moves of a rate or score than this (relative) are sampling noise, not a change.
RELATIVE_TOLERANCE = 0.02
MAX_LINES = 20


def title_shape(title: str) -> str:
    """A finding's title with its numbers blanked, so "12 rows" and "15 rows" are the same finding."""
    return re.sub(r"\d+(?:[.,]\d+)*", "#", title)


def _key(f: Finding) -> tuple[str, str, str]:
    return f.check, f.target, title_shape(f.title)


def _brief(f: Finding) -> dict[str, Any]:
    return {"check": f.check, "severity": f.severity.label, "title": _cut(f.title), "target": _cut(f.target)}


def _headline(card: RiskCard) -> dict[tuple[str, str], dict[str, Any]]:
    """(check, target) -> the headline metrics of its findings (the first value of each key)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for f in card.findings:
        slot = merged.setdefault((f.check, f.target), {})
        for name, value in f.metrics.items():
            if name in HEADLINE_METRICS or name in ("eps", "sigma", "queries"):
                slot.setdefault(name, value)
    return merged


def _number(metrics: Mapping[str, Any], name: str) -> tuple[float | None, str]:
    """The comparable number of a metric and, for list metrics, where on its axis it was read."""
    value = metrics.get(name)
    if name == "unsafe_globals" and isinstance(value, (list, tuple)):
        return float(len(value)), ""
    where = ""
    if isinstance(value, (list, tuple)):
        if not value:
            return None, ""
        axis, symbol = _AXIS.get(name, ("", ""))
        points = metrics.get(axis)
        if isinstance(points, (list, tuple)) and len(points) == len(value):
            where = f" at {symbol} = {_fmt(points[-1])}" if symbol != "queries" else f" at {_fmt(points[-1])} queries"
        value = value[-1]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, where
    return float(value), where


def _fmt(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def _moved(name: str, before: float, after: float) -> bool:
    if name in _COUNTS:
        return before != after
    return abs(after - before) > RELATIVE_TOLERANCE * max(abs(before), abs(after), 1e-12)


@dataclass
class Changes:
    """The differences between a card and the card of the same cell's previous run."""

    previous_card_id: str
    previous_execution_count: int | None = None
    new: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    severity: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.new or self.resolved or self.severity or self.metrics)

    def lines(self) -> list[str]:
        """One readable line a change, most important first (at most :data:`MAX_LINES`)."""
        out = [f"New: {f['severity']} {f['title']}" + _on(f) for f in self.new]
        out += [f"Resolved: {f['severity']} {f['title']}" + _on(f) for f in self.resolved]
        out += [f"{f['title']}{_on(f)}: {f['before']} → {f['after']}" for f in self.severity]
        out += [m["text"] + _on(m) for m in self.metrics]
        if len(out) > MAX_LINES:
            out = out[: MAX_LINES - 1] + [f"… and {len(out) - MAX_LINES + 1} more changes"]
        return out

    def heading(self) -> str:
        run = f"run [{self.previous_execution_count}]" if self.previous_execution_count else "run"
        return f"Same findings as the last {run}" if self.empty else f"Changed since the last {run}"

    def to_dict(self) -> dict[str, Any]:
        return {"previous_card_id": self.previous_card_id, "previous_execution_count": self.previous_execution_count,
                "new": self.new, "resolved": self.resolved, "severity": self.severity, "metrics": self.metrics,
                "lines": self.lines(), "heading": self.heading()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Changes":
        """Changes back from a saved card; entries without the text fields a line needs are dropped."""
        count = data.get("previous_execution_count")

        def entries(kind: str, needs: tuple[str, ...]) -> list[dict[str, Any]]:
            found = data.get(kind)
            out = []
            for entry in found if isinstance(found, list) else []:
                if isinstance(entry, Mapping) and all(isinstance(entry.get(k), str) for k in needs):
                    target = entry.get("target")
                    out.append({**entry, "target": target if isinstance(target, str) else ""})
            return out

        brief = ("check", "severity", "title")
        return cls(previous_card_id=str(data.get("previous_card_id", "")),
                   previous_execution_count=count if type(count) is int else None,
                   new=entries("new", brief), resolved=entries("resolved", brief),
                   severity=entries("severity", (*brief, "before", "after")),
                   metrics=entries("metrics", ("check", "metric", "text")))


def _on(entry: Mapping[str, Any]) -> str:
    return f" ({entry['target']})" if entry.get("target") else ""


def compare(previous: RiskCard, current: RiskCard) -> Changes:
    """How ``current`` differs from ``previous``: findings above info that appeared or went away
    (matched by check, target and title with its numbers blanked), severities that moved, and the
    :data:`HEADLINE_METRICS` that moved (counts by any amount, rates by more than 2%). Only checks
    that completed in both runs are compared: a check that timed out or was cancelled in one of them
    neither "resolves" nor "adds" anything."""
    changes = Changes(previous.card_id, previous.execution_count)
    both = _completed(previous) & _completed(current)
    before = {_key(f): f for f in previous.findings if (f.check, f.target) in both}
    after = {_key(f): f for f in current.findings if (f.check, f.target) in both}
    for key, f in after.items():
        old = before.get(key)
        if old is None:
            if f.severity > Severity.INFO:
                changes.new.append(_brief(f))
        elif old.severity != f.severity:
            changes.severity.append({**_brief(f), "before": old.severity.label, "after": f.severity.label})
    changes.resolved = [_brief(f) for key, f in before.items() if key not in after and f.severity > Severity.INFO]
    old_metrics = _headline(previous)
    seen: set[tuple[str, str]] = set()  # "rows" is on every check of a target: one line for it
    for (check, target), metrics in _headline(current).items():
        earlier = old_metrics.get((check, target))
        if earlier is not None and (check, target) in both:
            for entry in _metric_changes(check, target, earlier, metrics):
                if (target, entry["metric"]) not in seen:
                    seen.add((target, entry["metric"]))
                    changes.metrics.append(entry)
    return changes


def _completed(card: RiskCard) -> set[tuple[str, str]]:
    """(check, target) of every check that finished normally on ``card``; a card made without checks
    (the one shown before a cell runs) counts all of its findings."""
    runs = card.runs
    if not runs:
        return {(f.check, f.target) for f in card.findings}
    return {(r.check, r.target) for r in runs if r.status is CheckStatus.DONE}


def _metric_changes(check: str, target: str, earlier: Mapping[str, Any], now: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, label in HEADLINE_METRICS.items():
        (old, old_where), (new, where) = _number(earlier, name), _number(now, name)
        if old is None or new is None or old_where != where or not _moved(name, old, new):
            continue
        if name == "n_rows" and not check.startswith("data."):  # a model check's rows are its data's
            continue
        text = f"{label}{where} {_fmt(old)} → {_fmt(new)}"
        if name in _COUNTS:
            text += f" ({'+' if new > old else '−'}{_fmt(abs(new - old))})"
        out.append({"check": check, "target": _cut(target), "metric": name, "before": old, "after": new,
                    "text": text})
    return out


__all__ = ["Changes", "HEADLINE_METRICS", "compare", "title_shape"]
