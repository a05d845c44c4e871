"""The plain-text risk card, and the string hygiene every card renderer shares.

Everything a user controls (subject, titles, summaries, recommendations, metric keys and values,
check messages, sampling notes, references) goes through :func:`clean_text` before it reaches a
card. It

* turns whitespace control characters (tab, newline, carriage return, form feed, U+0085,
  U+2028/U+2029 …) into a plain space, so every field stays on one line;
* removes every other control character (category ``Cc``: NUL, ESC — so no ANSI/terminal escape
  sequences reach a terminal —, DEL, C1 controls), every format character (category ``Cf``: the
  bidi embeddings/overrides/isolates U+202A–U+202E and U+2066–U+2069, LRM/RLM, zero-width space,
  joiners, word joiner, BOM, soft hyphen, tag characters …) and lone surrogates (``Cs``), so
  nothing can reorder, hide or break the card's text or its UTF-8 encoding;
* truncates to a fixed number of code points, ending in ``…``.

The HTML renderer escapes the result, so the text a browser shows equals the cleaned, truncated
input exactly (reliability note, Q10). Cleaning stops as soon as the limit is reached, so a
100 KB string costs no more than a short one.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..findings import CheckRun, Finding, RiskCard

#: Longest subject, title, summary, recommendation, check message or note, in code points.
TEXT_LIMIT = 300
#: Longest metric value as shown (lists and dicts are abbreviated first, then cut here).
VALUE_LIMIT = 80
#: Longest metric name.
KEY_LIMIT = 60
#: Longest check id, check target or framework reference.
LABEL_LIMIT = 120
#: How many items of a list/dict metric are shown before "… +N more".
ITEMS_SHOWN = 6
#: How many row indices of a finding are listed before "… (+N more)".
ROWS_SHOWN = 8
#: At most this many lines of findings, of unfinished checks and of notes in the text card.
MAX_LINES = 50
ELLIPSIS = "\u2026"

_REMOVED_CATEGORIES = frozenset({"Cf", "Cs"})
_SPACE_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def _safe_str(value: Any) -> str:
    """``str(value)`` that never raises (a user's ``__str__`` may)."""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - any user __str__ failure
        return f"<{type(value).__name__}>"


def clean_text(value: Any, limit: int = TEXT_LIMIT) -> str:
    """Return ``value`` as one safe line of at most ``limit`` code points (see the module doc)."""
    text = _safe_str(value)
    head = text[: limit + 1]
    if head.isprintable():  # fast path: nothing to strip in the part that can be shown
        return head if len(head) <= limit else head[: limit - 1] + ELLIPSIS
    out: list[str] = []
    for ch in text:
        if not ch.isprintable() and ch != " ":
            category = unicodedata.category(ch)
            if category in _SPACE_CATEGORIES:
                ch = " " if ch.isspace() else ""
            elif category in _REMOVED_CATEGORIES:
                ch = ""
            # other non-printables (Zs such as NBSP, private use, unassigned) are kept as they are
        if ch:
            out.append(ch)
            if len(out) > limit:
                break
    if len(out) > limit:
        del out[limit - 1:]
        out.append(ELLIPSIS)
    return "".join(out)


def format_number(value: float | int) -> str:
    """Numbers for people: ``12,345``, ``0.0512``, ``1.5e-07``, ``NaN``, ``∞``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "\u221e" if v > 0 else "-\u221e"
    if v == 0:
        return "0"
    if 1000 <= abs(v) < 1e15:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, without importing numpy."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        try:
            return item()
        except Exception:  # noqa: BLE001
            return value
    return value


def _abbreviate(items: Iterable[Any], total: int, depth: int, open_: str, close: str,
                pair: bool = False) -> str:
    parts = []
    for item in items:
        if pair:
            key, val = item
            parts.append(f"{clean_text(key, KEY_LIMIT)}: {_format(val, depth + 1)}")
        else:
            parts.append(_format(item, depth + 1))
    if total > len(parts):
        parts.append(f"{ELLIPSIS} +{total - len(parts):,} more")
    return open_ + ", ".join(parts) + close


def _format(value: Any, depth: int) -> str:
    value = _plain(value)
    if value is None:
        return "\u2014"
    if isinstance(value, (bool, int, float)):
        return format_number(value)
    if isinstance(value, str):
        return clean_text(value, VALUE_LIMIT)
    if depth >= 2:
        return ELLIPSIS
    if isinstance(value, Mapping):
        shown = []
        for i, kv in enumerate(value.items()):
            if i >= ITEMS_SHOWN:
                break
            shown.append(kv)
        return _abbreviate(shown, len(value), depth, "{", "}", pair=True)
    shape = getattr(value, "shape", None)
    flat = getattr(value, "flat", None)
    if shape is not None and flat is not None:  # a numpy array: never convert it whole
        try:
            total = int(getattr(value, "size", 0))
            return _abbreviate(list(flat[:ITEMS_SHOWN]), total, depth, "[", "]")
        except Exception:  # noqa: BLE001
            return clean_text(value, VALUE_LIMIT)
    if isinstance(value, (list, tuple, set, frozenset)):
        total = len(value)
        shown = []
        for i, item in enumerate(value):
            if i >= ITEMS_SHOWN:
                break
            shown.append(item)
        return _abbreviate(shown, total, depth, "[", "]")
    return clean_text(value, VALUE_LIMIT)


def format_value(value: Any) -> str:
    """A metric value as one short line: lists and dicts abbreviated, at most VALUE_LIMIT long."""
    return clean_text(_format(value, 0), VALUE_LIMIT)


def format_rows(indices: Sequence[int], shown: int = ROWS_SHOWN) -> str:
    """``3, 17, 52 … (+120 more)`` for the first ``shown`` row indices."""
    head = ", ".join(f"{int(i)}" for i in indices[:shown])
    rest = len(indices) - shown
    return f"{head} {ELLIPSIS} (+{rest:,} more)" if rest > 0 else head


def format_seconds(seconds: float) -> str:
    return f"{float(seconds):.3g} s"


def run_parts(run: "CheckRun") -> tuple[str, str]:
    """What happened to a check run, as ``(fixed prefix, cleaned user message)``.

    ``("check failed: ", "ValueError: …")``, ``("timed out after 30 s", "")``,
    ``("skipped: ", "needs labels (y)")``, ``("cancelled", "")``.
    """
    from ..findings import CheckStatus

    message = clean_text(run.message) if run.message else ""
    status = run.status
    if status is CheckStatus.TIMED_OUT:
        prefix = "timed out"
        if run.seconds is not None:
            prefix += f" after {format_seconds(run.seconds)}"
    else:
        prefix = {
            CheckStatus.FAILED: "check failed",
            CheckStatus.CANCELLED: "cancelled",
            CheckStatus.SKIPPED: "skipped",
            CheckStatus.PENDING: "waiting",
            CheckStatus.RUNNING: "running",
            CheckStatus.DONE: "done",
        }.get(status, clean_text(getattr(status, "value", status), LABEL_LIMIT))
    return (prefix + ": ", message) if message else (prefix, "")


def run_label(run: "CheckRun") -> str:
    """``data.duplicates`` or ``data.duplicates (X_train)``."""
    label = clean_text(run.check, LABEL_LIMIT)
    if run.target:
        label += f" ({clean_text(run.target, LABEL_LIMIT)})"
    return label


def problem_runs(card: "RiskCard") -> list["CheckRun"]:
    """Runs that finished without a normal result: failed, timed out, cancelled, skipped."""
    from ..findings import CheckStatus

    return [r for r in card.runs if r.status.finished and r.status is not CheckStatus.DONE]


def sampling_notes(runs: Iterable["CheckRun"]) -> list[tuple[list[str], str]]:
    """Sampling notes grouped by text: ``[(["data.outliers", …], "sampled 200,000 of …"), …]``."""
    grouped: dict[str, list[str]] = {}
    for run in runs:
        if run.sampled:
            note = clean_text(run.sampled)
            grouped.setdefault(note, []).append(run_label(run))
    return [(labels, note) for note, labels in grouped.items()]


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def issue_counts(findings: Iterable["Finding"]) -> str:
    """``1 high, 1 low`` over the findings above ``info``, highest severity first."""
    from ..findings import Severity

    counts = Counter(f.severity for f in findings if f.severity > Severity.INFO)
    return ", ".join(f"{counts[s]} {s.label}" for s in sorted(counts, reverse=True))


def verdict(card: "RiskCard") -> str:
    """One line: ``2 issues: 1 high, 1 low``, ``No issues found by 2 checks`` or, while checks
    run, ``3 of 5 checks done``; problems are appended (``; 1 check failed``)."""
    from ..findings import CheckStatus, Severity

    findings = card.findings
    runs = card.runs
    issues = [f for f in findings if f.severity > Severity.INFO]
    if card.status == "running":
        done = sum(r.status.finished for r in runs)
        line = f"{done} of {_plural(len(runs), 'check')} done"
        if issues:
            line += f"; {_plural(len(issues), 'issue')} so far: {issue_counts(issues)}"
        return line
    if issues:
        line = f"{_plural(len(issues), 'issue')}: {issue_counts(issues)}"
    else:
        n_checks = sum(r.status is CheckStatus.DONE for r in runs) if runs else len(
            {f.check for f in findings})
        line = f"No issues found by {_plural(n_checks, 'check')}" if n_checks else "No checks ran"
    problems = Counter(r.status for r in problem_runs(card))
    if problems:
        words = {
            CheckStatus.FAILED: "failed", CheckStatus.TIMED_OUT: "timed out",
            CheckStatus.CANCELLED: "cancelled", CheckStatus.SKIPPED: "skipped",
        }
        ordered = [(s, problems[s]) for s in words if problems[s]]
        ordered += [(s, n) for s, n in problems.items() if s not in words]
        if len(ordered) == 1:
            ((status, n),) = ordered
            line += f"; {_plural(n, 'check')} {words.get(status, status.value)}"
        else:
            line += "; " + ", ".join(f"{n} {words.get(s, s.value)}" for s, n in ordered)
    return line


def hidden_line(card: "RiskCard", hidden: int) -> str:
    """``2 findings below low hidden (%mlsec config min_severity=info shows them)``."""
    return (f"{_plural(hidden, 'finding')} below {card.min_severity.label} hidden "
            "(%mlsec config min_severity=info shows them)")


def card_text(card: "RiskCard") -> str:
    """The whole card as plain text, one line a finding (``text/plain`` and ``repr``)."""
    subject = clean_text(card.subject)
    max_sev = card.max_severity.label
    if card.status == "running":
        head = f"Risk card: {subject} (running, max severity so far: {max_sev})"
    else:
        head = f"Risk card: {subject} (done, max severity: {max_sev})"
    lines = [f"{head} \u2014 {verdict(card)}"]
    if card.changes is not None:
        lines.append(clean_text(card.changes.heading()) + "".join(f"\n  {clean_text(c)}" for c in card.changes.lines()))
    findings, hidden = card.visible()
    show_target = card.several_targets
    for f in findings[:MAX_LINES]:
        line = f"[{f.severity.label.upper()}] {clean_text(f.check, LABEL_LIMIT)}: {clean_text(f.title)}"
        if show_target and f.target:
            line += f" (on {clean_text(f.target, LABEL_LIMIT)})"
        if f.recommendation:
            line += f" \u2014 {clean_text(f.recommendation)}"
        lines.append(line)
    if len(findings) > MAX_LINES:
        lines.append(f"{ELLIPSIS} +{len(findings) - MAX_LINES:,} more findings")
    if hidden:
        lines.append(hidden_line(card, hidden))
    runs = card.runs
    unfinished = [r for r in runs if r.status.value != "done"]
    for run in unfinished[:MAX_LINES]:
        prefix, message = run_parts(run)
        lines.append(f"- {run_label(run)}: {prefix}{message}")
    if len(unfinished) > MAX_LINES:
        lines.append(f"{ELLIPSIS} +{len(unfinished) - MAX_LINES:,} more checks")
    notes = sampling_notes(runs)
    for labels, note in notes[:MAX_LINES]:
        lines.append(f"note: {clean_text(', '.join(labels))}: {note}")
    if len(notes) > MAX_LINES:
        lines.append(f"{ELLIPSIS} +{len(notes) - MAX_LINES:,} more notes")
    return "\n".join(lines)
