"""Reports of everything a notebook session found: one self-contained HTML page, JSON, SARIF 2.1.0.

``write_report(path, cards)`` picks the format from ``format=`` or the file name (``.html``,
``.json``, ``.sarif``). Cards come from a live session (:meth:`Session.report_cards`) or from a saved
notebook's outputs (:func:`cards_in_notebook`); each is :class:`Located` at its notebook cell.

* HTML: a summary (counts, one row a finding with its standards and cell), then every card as the
  notebook shows it. No scripts, no remote assets; every user string escaped.
* JSON: ``{"version", "generator", "notebook", "summary", "cards": [card JSON + "location"]}``; the
  cards follow the card schema of DESIGN.md.
* SARIF 2.1.0 (OASIS, https://docs.oasis-open.org/sarif/sarif/v2.1.0/): one rule per check id with
  its MITRE ATLAS / OWASP / NIST ids (:mod:`mlsec_jupyter.standards`), one result per finding, located
  at the notebook and the line where its cell starts, plus the cell as a logical location. Checks that
  did not finish become tool execution notifications, so "not checked" is never read as "clean".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from .changes import title_shape
from .findings import CARD_MIME, CheckStatus, Finding, RiskCard, Severity
from .session import check_title
from .standards import STANDARDS, standards_for

FORMATS = ("html", "json", "sarif")
SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning",
           Severity.LOW: "note", Severity.INFO: "none"}
#: GitHub code scanning reads ``security-severity`` (0-10) to rank security results.
_SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5",
                      Severity.LOW: "3.0", Severity.INFO: "0.0"}
_MESSAGE_LIMIT = 2000
#: A report draws every finding of a card (a notebook output draws the first 60, about 100 KB).
REPORT_MAX_FINDINGS = 100_000
REPORT_CARD_BUDGET = 50_000_000


@dataclass(frozen=True)
class Located:
    """A card and the notebook cell that made it (any part may be unknown)."""

    card: RiskCard
    cell_index: int | None = None  # 0-based position among all cells of the notebook
    cell_id: str | None = None
    execution_count: int | None = None
    line: int | None = None  # 1-based line of the .ipynb file where the cell starts

    def cell_label(self) -> str:
        parts = []
        if self.cell_index is not None:
            parts.append(f"cell {self.cell_index + 1}")
        if self.execution_count is not None:
            parts.append(f"In [{self.execution_count}]")
        return " · ".join(parts) or "no cell"

    def to_dict(self) -> dict[str, Any]:
        return {"cell_index": self.cell_index, "cell_id": self.cell_id, "execution_count": self.execution_count,
                "line": self.line}


# -- locating cards ---------------------------------------------------------------------------------------
def cell_start_lines(text: str) -> list[int]:
    """The 1-based line of each cell in a notebook file's text, in cell order (nbformat writes one
    ``"cell_type": ...`` key a cell, on a line of its own; source lines are escaped strings)."""
    return [n for n, line in enumerate(text.splitlines(), 1) if re.match(r'\s*"cell_type"\s*:\s*"', line)]


def read_notebook(path: str | Path) -> tuple[dict[str, Any], str]:
    """A notebook file's JSON and text; ``ValueError`` with what was found when it is not a notebook."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"Cannot read the notebook {str(path)!r}: {exc.strerror or exc}.") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not a notebook: its JSON does not parse ({exc.msg} at line "
                         f"{exc.lineno}).") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError(f"{str(path)!r} is not a notebook: expected a JSON object with a 'cells' list.")
    return nb, text


def cards_in_notebook(nb: Mapping[str, Any], text: str = "") -> tuple[list[Located], list[str]]:
    """The risk cards saved in a notebook's outputs, each at its cell, and a note for each card
    output that could not be read. A card shown twice (the same card id) counts once."""
    lines = cell_start_lines(text) if text else []
    cells = nb.get("cells", [])
    lines = lines if len(lines) == len(cells) else []
    found: dict[str, Located] = {}
    problems: list[str] = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs") or []:
            data = output.get("data") if isinstance(output, Mapping) else None
            if not isinstance(data, Mapping) or CARD_MIME not in data:
                continue
            try:
                card = RiskCard.from_dict(data[CARD_MIME])
            except ValueError as exc:
                problems.append(f"cell {index + 1}: a card output could not be read: {exc}")
                continue
            count = cell.get("execution_count")
            found.setdefault(card.card_id, Located(card, index, _text_or_none(cell.get("id")),
                                                   count if isinstance(count, int) else None,
                                                   lines[index] if lines else None))
    return list(found.values()), problems


def locate(cards: Iterable[RiskCard], notebook: str | Path | None) -> list[Located]:
    """Place live cards at their cells: by cell id in the saved notebook file, when there is one."""
    where: dict[str, tuple[int, int | None]] = {}
    if notebook is not None and Path(notebook).is_file():
        try:
            nb, text = read_notebook(notebook)
        except ValueError:
            nb, text = {"cells": []}, ""
        lines = cell_start_lines(text)
        cells = nb["cells"]
        for index, cell in enumerate(cells):
            if isinstance(cell, Mapping) and isinstance(cell.get("id"), str):
                where[cell["id"]] = (index, lines[index] if len(lines) == len(cells) else None)
    out = []
    for card in cards:
        index, line = where.get(card.cell_id or "", (None, None))
        out.append(Located(card, index, card.cell_id, card.execution_count, line))
    return out


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- shared -----------------------------------------------------------------------------------------------
def _all_findings(entries: list[Located]) -> list[tuple[Located, Finding]]:
    return [(e, f) for e in entries for f in e.card.findings]


def summary(entries: list[Located]) -> dict[str, Any]:
    """Counts by severity, the highest severity, and checks that did not finish normally."""
    counts = {s.label: 0 for s in reversed(Severity)}
    found = [f.severity for _, f in _all_findings(entries)]
    for severity in found:
        counts[severity.label] += 1
    unfinished = sum(1 for e in entries for r in e.card.runs if r.status not in (CheckStatus.DONE, CheckStatus.SKIPPED))
    return {"cards": len(entries), "findings": sum(counts.values()), "by_severity": counts,
            "max_severity": max(found).label if found else None, "checks_not_finished": unfinished,
            "cards_still_running": sum(1 for e in entries if e.card.status != "done")}


def _generator() -> dict[str, str]:
    from . import __version__

    return {"name": "mlsec-jupyter", "version": __version__}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _uri(notebook: str | Path) -> tuple[str, bool]:
    """The notebook as a URI: relative to the working folder (with ``%SRCROOT%``) when inside it."""
    path = Path(notebook).resolve()
    try:
        return quote(path.relative_to(Path.cwd().resolve()).as_posix(), safe="/"), True
    except ValueError:
        return path.as_uri(), False


# -- JSON -------------------------------------------------------------------------------------------------
def json_report(entries: list[Located], notebook: str | Path | None = None, *,
                problem: str | None = None) -> dict[str, Any]:
    """The report as a JSON object: cards in the card schema, each with its ``location``."""
    return {"version": 1, "generator": _generator(), "created": _now(),
            "notebook": None if notebook is None else str(notebook), "complete": problem is None,
            "problem": problem, "summary": summary(entries),
            "cards": [{**e.card.to_dict(), "location": e.to_dict()} for e in entries]}


# -- SARIF ------------------------------------------------------------------------------------------------
def _rule_name(check: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", check) if part)


def _rule(check: str, worst: Severity | None) -> dict[str, Any]:
    std = standards_for(check)
    refs = std.references()
    title = check_title(check)
    described = "; ".join(refs) if refs else "no published standard mapped"
    rule: dict[str, Any] = {
        "id": check,
        "name": _rule_name(check),
        "shortDescription": {"text": title},
        "fullDescription": {"text": f"mlsec-jupyter check {check} ({title}). Evidence for: {described}."},
        "help": {"text": "Standards: " + described + ". Each result's message says what was found and "
                         "what to do.",
                 "markdown": "**Standards**\n\n" + "\n".join(f"- {r}" for r in refs) if refs
                 else "No published standard is mapped to this check."},
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["security", "machine-learning", *std.ids()],
                       "mitre-atlas": list(std.atlas), "owasp-ml-top10": list(std.owasp),
                       "nist-ai-rmf": list(std.nist)},
    }
    if std.atlas:
        rule["helpUri"] = f"https://atlas.mitre.org/techniques/{std.atlas[0]}"
    if worst is not None:
        rule["properties"]["security-severity"] = _SECURITY_SEVERITY[worst]
    return rule


def _location(entry: Located, notebook: tuple[str, bool] | None) -> dict[str, Any]:
    """The notebook file and line of the card's cell, and the cell (or, for a card made outside a notebook
    cell, its subject) as a logical location."""
    where = entry.cell_label() if entry.cell_index is not None or notebook is not None else entry.card.subject[:200]
    logical = {"name": where, "fullyQualifiedName": f"{notebook[0] if notebook else 'session'}#{where}"}
    location: dict[str, Any] = {"logicalLocations": [logical]}
    if notebook is not None:
        artifact: dict[str, Any] = {"uri": notebook[0]}
        if notebook[1]:
            artifact["uriBaseId"] = "%SRCROOT%"
        physical: dict[str, Any] = {"artifactLocation": artifact}
        if entry.line is not None:
            physical["region"] = {"startLine": entry.line}
        location["physicalLocation"] = physical
    location["properties"] = {k: v for k, v in entry.to_dict().items() if v is not None}
    return location


def _plain_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Numbers, words and short lists of them: aggregates only (no images, no row values)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[key] = value if not isinstance(value, str) else value[:200]
        elif isinstance(value, (list, tuple)) and len(value) <= 100 and all(
                isinstance(v, (bool, int, float, str)) or v is None for v in value):
            out[key] = [v[:200] if isinstance(v, str) else v for v in value]
    return out


def _fingerprint(notebook: str, entry: Located, f: Finding) -> str:
    cell = entry.cell_id or (str(entry.cell_index) if entry.cell_index is not None else entry.card.subject)
    key = "\x1f".join((notebook, cell, f.check, f.target, title_shape(f.title)))
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:32]


def _result(entry: Located, f: Finding, rule_index: int, notebook: tuple[str, bool] | None) -> dict[str, Any]:
    text = f.title + (f". {f.summary}" if f.summary else "")
    if f.recommendation:
        text += f" What to do: {f.recommendation}"
    result: dict[str, Any] = {
        "ruleId": f.check,
        "ruleIndex": rule_index,
        "level": _LEVELS[f.severity],
        "message": {"text": text[:_MESSAGE_LIMIT]},
        "partialFingerprints": {"mlsecFinding/v1": _fingerprint(notebook[0] if notebook else "", entry, f)},
        "properties": {"severity": f.severity.label, "security-severity": _SECURITY_SEVERITY[f.severity],
                       "title": f.title, "subject": entry.card.subject, "target": f.target,
                       "card_id": entry.card.card_id, "metrics": _plain_metrics(f.to_dict()["metrics"]),
                       "flagged_rows": len(f.indices), "references": list(f.references)},
    }
    if f.severity is Severity.INFO:
        result["kind"] = "informational"
    result["locations"] = [_location(entry, notebook)]
    return result


def _notifications(entries: list[Located], index: dict[str, int], problem: str | None) -> list[dict[str, Any]]:
    """Why the run is incomplete: the scan's own problem, and checks that timed out, failed or were cancelled."""
    out: list[dict[str, Any]] = [{"level": "error", "message": {"text": problem[:_MESSAGE_LIMIT]}}] if problem else []
    for entry in entries:
        for run in entry.card.runs:
            if run.status in (CheckStatus.DONE, CheckStatus.SKIPPED):
                continue
            level = "error" if run.status is CheckStatus.FAILED else "warning"
            target = f" on {run.target}" if run.target else ""
            message = f"{run.check}{target} ({entry.cell_label()}): {run.status.value}" + (
                f": {run.message}" if run.message else "")
            note: dict[str, Any] = {"level": level, "message": {"text": message[:_MESSAGE_LIMIT]}}
            if run.check in index:
                note["associatedRule"] = {"id": run.check, "index": index[run.check]}
            out.append(note)
    return out


def sarif_report(entries: list[Located], notebook: str | Path | None = None, *,
                 problem: str | None = None) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log with one run (validates against the OASIS schema); ``problem``
    says why the run is incomplete (the run is then not successful)."""
    pairs = _all_findings(entries)
    worst: dict[str, Severity] = {}
    for _, f in pairs:
        if f.severity > Severity.INFO:  # "checked and clean" results do not rank a rule
            worst[f.check] = max(worst.get(f.check, Severity.INFO), f.severity)
    checks = list(STANDARDS) + sorted({f.check for _, f in pairs} - set(STANDARDS))
    index = {check: i for i, check in enumerate(checks)}
    where = _uri(notebook) if notebook is not None else None
    run: dict[str, Any] = {
        "tool": {"driver": {**_generator(), "rules": [_rule(c, worst.get(c)) for c in checks]}},
        "invocations": [{"executionSuccessful": problem is None, "endTimeUtc": _now(),
                         "toolExecutionNotifications": _notifications(entries, index, problem)}],
        "results": [_result(e, f, index[f.check], where) for e, f in pairs],
        "columnKind": "unicodeCodePoints",
        "properties": {"summary": summary(entries)},
    }
    if where is not None:
        run["artifacts"] = [{"location": {"uri": where[0], **({"uriBaseId": "%SRCROOT%"} if where[1] else {})},
                             "mimeType": "application/x-ipynb+json"}]
        if where[1]:
            run["originalUriBaseIds"] = {"%SRCROOT%": {"uri": Path.cwd().resolve().as_uri() + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


# -- HTML -------------------------------------------------------------------------------------------------
_PAGE_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;
  margin:24px auto;max-width:980px;padding:0 16px;color:#1f2328;line-height:1.45}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:14px;margin:18px 0 4px;color:#57606a}
.meta{color:#57606a;font-size:13px} table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa} td:last-child{white-space:nowrap} .sev{font-weight:700;font-size:11px;letter-spacing:.4px}
.sev-critical{color:#8b0000}.sev-high{color:#cf222e}.sev-medium{color:#bc4c00}.sev-low{color:#9a6700}
.sev-info{color:#57606a} .chips span{display:inline-block;margin-right:12px;font-size:14px}
code{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _finding_rows(entries: list[Located], anchors: dict[str, str]) -> str:
    pairs = sorted(((e, f) for e, f in _all_findings(entries) if f.severity > Severity.INFO),
                   key=lambda p: -p[1].severity)
    if not pairs:
        return "<p>No issues found: every finding is informational.</p>"
    rows = []
    for entry, f in pairs:
        std = ", ".join(standards_for(f.check).ids()) or "—"
        target = f" <span class='meta'>({_e(f.target)})</span>" if f.target else ""
        rows.append(f"<tr><td class='sev sev-{f.severity.label}'>{f.severity.label.upper()}</td>"
                    f"<td>{_e(f.title)}{target}</td><td><code>{_e(f.check)}</code></td><td>{_e(std)}</td>"
                    f"<td><a href='#{anchors[entry.card.card_id]}'>{_e(entry.cell_label())}</a></td></tr>")
    return ("<table><thead><tr><th>Severity</th><th>Finding</th><th>Check</th><th>Standards</th>"
            "<th>Where</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _standards_table(entries: list[Located]) -> str:
    checks = sorted({f.check for _, f in _all_findings(entries)})
    rows = []
    for check in checks:
        std = standards_for(check)
        rows.append(f"<tr><td><code>{_e(check)}</code></td><td>{_e(', '.join(std.atlas) or '—')}</td>"
                    f"<td>{_e(', '.join(std.owasp) or '—')}</td><td>{_e(', '.join(std.nist) or '—')}</td></tr>")
    return ("<table><thead><tr><th>Check</th><th>MITRE ATLAS</th><th>OWASP ML Top 10</th><th>NIST AI RMF</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def html_report(entries: list[Located], notebook: str | Path | None = None, *, problem: str | None = None) -> str:
    """The report as one self-contained HTML page (no scripts, nothing loaded from anywhere)."""
    from .render.html import card_html

    counts = summary(entries)
    anchors = {e.card.card_id: f"card-{i + 1}" for i, e in enumerate(entries)}
    chips = "".join(f"<span class='sev-{name}'><b>{n}</b> {name}</span>"
                    for name, n in counts["by_severity"].items())
    name = Path(notebook).name if notebook is not None else "this session"
    unfinished = (f"<p class='sev-critical'><b>The scan did not complete:</b> {_e(problem)} What is below is what "
                  "was found up to there.</p>") if problem else ""
    if counts["checks_not_finished"] or counts["cards_still_running"]:
        unfinished += (f"<p class='sev-medium'>{counts['checks_not_finished']} check(s) did not finish normally "
                      f"and {counts['cards_still_running']} card(s) were still running: their findings are "
                      "missing here, so read those parts as not checked.</p>")
    cards = "".join(f"<h3 id='{anchors[e.card.card_id]}'>{_e(e.cell_label())}</h3>"
                    f"{card_html(e.card, max_findings=REPORT_MAX_FINDINGS, budget=REPORT_CARD_BUDGET)}"
                    for e in entries) or "<p>No risk cards in this session yet.</p>"
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>mlsec-jupyter report: {_e(name)}</title><style>{_PAGE_CSS}</style></head><body>"
            f"<h1>ML security report: {_e(name)}</h1>"
            f"<div class='meta'>mlsec-jupyter {_e(_generator()['version'])} · {_e(_now())} · "
            f"{counts['cards']} card(s), {counts['findings']} finding(s)</div>"
            f"<p class='chips'>{chips}</p>{unfinished}"
            f"<h2>Findings</h2>{_finding_rows(entries, anchors)}"
            f"<h2>Standards</h2>{_standards_table(entries)}"
            f"<h2>Cards</h2>{cards}</body></html>")


# -- writing ----------------------------------------------------------------------------------------------
def format_for(path: str | Path, format: str | None = None) -> str:
    """``format`` checked, or guessed from the file name; ``ValueError`` says how to fix it."""
    if format is not None:
        chosen = format.strip().lower()
        if chosen not in FORMATS:
            raise ValueError(f"Unknown report format {format!r}; expected one of: {', '.join(FORMATS)}.")
        return chosen
    name = Path(path).name.lower()
    for suffix, chosen in ((".sarif", "sarif"), (".sarif.json", "sarif"), (".html", "html"), (".htm", "html"),
                           (".json", "json")):
        if name.endswith(suffix):
            return chosen
    raise ValueError(f"Cannot tell the report format from {str(path)!r}; name the file .html, .json or "
                     f".sarif, or pass format='html' | 'json' | 'sarif'.")


def render(entries: list[Located], format: str, notebook: str | Path | None = None, *,
           problem: str | None = None) -> str:
    """The report text in ``format``; ``problem``: why the scan is incomplete, said in every format."""
    if format == "html":
        return html_report(entries, notebook, problem=problem)
    data = (json_report if format == "json" else sarif_report)(entries, notebook, problem=problem)
    return json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False)


def write_report(path: str | Path, entries: list[Located], *, format: str | None = None,
                 notebook: str | Path | None = None, problem: str | None = None) -> Path:
    """Write the report to ``path`` (UTF-8, replaced atomically) and return its path."""
    chosen = format_for(path, format)
    target = Path(path).expanduser()
    text = render(entries, chosen, notebook, problem=problem)
    if target.parent and not target.parent.is_dir():
        raise ValueError(f"Cannot write {str(target)!r}: the folder {str(target.parent)!r} does not exist.")
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
    return target


__all__ = ["FORMATS", "Located", "cards_in_notebook", "format_for", "html_report", "json_report", "locate",
           "read_notebook",
           "render", "sarif_report", "summary", "write_report"]
