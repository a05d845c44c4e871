"""The ``text/html`` risk card: self-contained, escaped, readable in every notebook front end.

Design rules (DESIGN.md "The risk-card bundle"; reliability note S1, S3, Q10):

* Every user-controlled string goes through :func:`~mlsec_jupyter.render.text.clean_text`
  (control, bidi and zero-width characters removed, truncated with ``…``) and then
  ``html.escape(quote=True)``, and sits alone inside a ``<bdi>`` element, so its text content is
  exactly the cleaned, truncated input and strong right-to-left text cannot reorder the card.
* No JavaScript, no event handlers, no forms, no links, no ``src``/``href``, no ``data-*``
  attributes, nothing loaded from the network. Expanding evidence uses ``<details>``.
* Layout and colours live in inline ``style`` attributes that survive JupyterLab's sanitizer for
  untrusted notebooks (no flexbox gaps, no ``var()`` without a plain declaration before it), so the
  card reads well without its ``<style>`` block, which only adds niceties (hover, the disclosure
  arrow). Theme colours use ``var(--jp-…, fallback)`` after a plain fallback declaration; the card
  sets no page background and inherits the text colour, so light and dark themes both work.
* The only attribute built from card data is the ``id``: ``card_id`` itself when it is already
  ``[A-Za-z0-9_-]{1,64}``, otherwise a hash of it (:func:`dom_id`). Class names are fixed words.
* A backdoor finding's ``trigger_mask`` metric (an H×W grid of 0/1, at most
  :data:`MAX_TRIGGER_SIDE` a side) is drawn as a small picture of the suspected trigger
  (:func:`_trigger_picture`). JupyterLab's sanitizer drops ``<svg>`` from untrusted output, so the
  picture is plain ``<div>`` elements: a ``position:relative`` frame whose background is the
  empty pixels, and one ``position:absolute`` block for each rectangle of trigger pixels, with px
  sizes, hex/rgba colours and an optional gradient pixel grid (all on the sanitizer's style
  allowlist; tested in tests/test_render.py). A mask that is not exactly
  a list of equal-length lists of 0/1 ints/bools, is too big, is empty, or would take more than
  :data:`MAX_TRIGGER_RECTS` blocks is not drawn (it stays in the metrics table, abbreviated).
* Line plots, gauges and image grids a finding asks for in its metrics (``plot``, ``gauge``,
  ``images``) are drawn by :mod:`mlsec_jupyter.render.plots` with the same ``<div>`` technique and
  never listed in the metrics table.
* Output size is bounded: long strings are cut, lists abbreviated, at most
  :data:`MAX_FINDINGS` findings / :data:`MAX_METRICS` metrics each / :data:`MAX_RUN_LINES` run
  lines are shown, and each section stops at its byte budget with a "+N more" line.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterable

from ..findings import CheckStatus, Severity
from .plots import gauge, image_grid, line_plot
from .text import (
    KEY_LIMIT,
    LABEL_LIMIT,
    ELLIPSIS,
    TEXT_LIMIT,
    VALUE_LIMIT,
    clean_text,
    format_rows,
    format_value,
    hidden_line,
    problem_runs,
    run_label,
    run_parts,
    sampling_notes,
    verdict,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..findings import CheckRun, Finding, RiskCard

MAX_FINDINGS = 60
MAX_METRICS = 20
MAX_REFERENCES = 12
MAX_RUN_LINES = 40
MAX_NOTES = 20
#: Largest trigger mask drawn (rows and columns), and most blocks one picture may take (~100 B each).
MAX_TRIGGER_SIDE = 64
MAX_TRIGGER_RECTS = 200
#: The trigger picture is about this many px on its longer side (cells 3–14 px).
TRIGGER_PICTURE_PX = 160
#: UTF-8 byte budgets per section: once one is spent, the rest of that section becomes a
#: "+N more" line. With the per-item caps this keeps a card under about 170 KB in the worst case.
FINDINGS_BUDGET = 100_000
RUNS_BUDGET = 25_000
NOTES_BUDGET = 10_000

# severity -> (solid colour, text colour on it, "r,g,b" for translucent tints)
_SEVERITY_COLOURS: dict[Severity, tuple[str, str, str]] = {
    Severity.INFO: ("#6a737d", "#ffffff", "106,115,125"),
    Severity.LOW: ("#2f6fdf", "#ffffff", "47,111,223"),
    Severity.MEDIUM: ("#e3a008", "#1f1600", "227,160,8"),
    Severity.HIGH: ("#d9480f", "#ffffff", "217,72,15"),
    Severity.CRITICAL: ("#b3261e", "#ffffff", "179,38,30"),
}
_CLEAN = ("#1a7f37", "#ffffff", "26,127,55")
_NEUTRAL = ("#6a737d", "#ffffff", "106,115,125")
_RUNNING = ("#2f6fdf", "#ffffff", "47,111,223")

_RUN_BADGES: dict[CheckStatus, tuple[str, str]] = {  # status -> (label, colour)
    CheckStatus.FAILED: ("FAILED", "#b3261e"),
    CheckStatus.TIMED_OUT: ("TIMED OUT", "#b35c00"),
    CheckStatus.CANCELLED: ("CANCELLED", "#6a737d"),
    CheckStatus.SKIPPED: ("SKIPPED", "#6a737d"),
    CheckStatus.PENDING: ("WAITING", "#6a737d"),
    CheckStatus.RUNNING: ("RUNNING", "#2f6fdf"),
}

_FONT = ("font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
         "font-family:var(--jp-ui-font-family,-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,"
         "Helvetica,Arial,sans-serif)")
_MONO = ("font-family:SFMono-Regular,Menlo,Consolas,'Liberation Mono',monospace;"
         "font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,'Liberation Mono',"
         "monospace)")
_MUTED = "color:#656d76;color:var(--jp-ui-font-color2,#656d76)"
_RULE = "rgba(127,127,127,.28)"
_PILL = ("display:inline-block;min-width:58px;padding:1px 6px;border-radius:10px;font-size:10.5px;"
         "font-weight:700;letter-spacing:.4px;line-height:16px;text-align:center;"
         "vertical-align:1px;box-sizing:border-box")

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _user(value: Any, cls: str, limit: int = TEXT_LIMIT, style: str = "") -> str:
    """A user-controlled string: cleaned, truncated, escaped, isolated in its own ``<bdi>``."""
    attr = f' style="{style}"' if style else ""
    return f'<bdi class="{cls}"{attr}>{_esc(clean_text(value, limit))}</bdi>'


def dom_id(card_id: Any) -> str:
    """``card_id`` as a safe, unique element id.

    An id that is already ``[A-Za-z0-9_-]{1,64}`` (the ones RiskCard makes) is used as is;
    anything else becomes a hash of it, so no fragment of an odd id reaches an attribute.
    """
    raw = str(card_id)
    if not _SAFE_ID.fullmatch(raw):
        raw = "h" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"mlsec-card-{raw}"


@functools.lru_cache(maxsize=1)
def card_css() -> str:
    """The card's optional stylesheet (read once from ``card.css`` next to this module)."""
    return resources.files(__package__).joinpath("card.css").read_text(encoding="utf-8")


def _style_block(element_id: str) -> str:
    css = card_css().replace("#CARD", f"#{element_id}")
    return f"<style>{css}</style>"


def _pill(label: str, colours: tuple[str, str, str], extra: str = "") -> str:
    bg, fg, _ = colours
    return (f'<span class="mlsec-pill" style="{_PILL};background-color:{bg};color:{fg}{extra}">'
            f"{_esc(label)}</span>")


def _card_colours(findings: list["Finding"], running: bool,
                  problems: list["CheckRun"]) -> tuple[tuple[str, str, str], str]:
    """Accent colours and badge label for the card header."""
    top = findings[0].severity if findings else Severity.INFO
    if top > Severity.INFO:
        return _SEVERITY_COLOURS[top], top.label.upper()
    if running:
        return _RUNNING, "RUNNING"
    if problems:
        return _NEUTRAL, "INCOMPLETE"
    return _CLEAN, "NO ISSUES"


def _running_text(run: "CheckRun") -> str:
    """``robustness.evasion (40%: PGD at ε 0.1)`` for a check that reports progress, else its id."""
    name = clean_text(run.check, LABEL_LIMIT)
    if run.status is CheckStatus.RUNNING and (run.progress > 0 or run.message):
        detail = f"{100 * run.progress:.0f}%" + (f": {clean_text(run.message, LABEL_LIMIT)}" if run.message else "")
        return f"{name} ({detail})"
    return name


def _progress_bar(card: "RiskCard", colour: str) -> str:
    pct = max(0.0, min(100.0, float(card.progress) * 100.0))
    running = [r for r in card.runs if not r.status.finished]
    waiting = ""
    if running:
        names = ", ".join(_running_text(r) for r in running[:4])
        more = f" +{len(running) - 4} more" if len(running) > 4 else ""
        waiting = (f'<div class="mlsec-waiting" style="margin-top:4px;font-size:11.5px;{_MUTED}">'
                   f"Still running: {_user(names, 'mlsec-waiting-checks', TEXT_LIMIT)}{_esc(more)}</div>")
    return (
        '<div class="mlsec-progress" style="margin-top:8px">'
        f'<div class="mlsec-bar" style="height:6px;border-radius:3px;overflow:hidden;'
        f'background-color:{_RULE};max-width:420px">'
        f'<div class="mlsec-bar-fill" style="height:6px;width:{pct:.1f}%;border-radius:3px;'
        f'background-color:{colour}"></div></div>{waiting}</div>'
    )


def _header(card: "RiskCard", findings: list["Finding"], problems: list["CheckRun"]) -> str:
    running = card.status == "running"
    colours, badge = _card_colours(findings, running, problems)
    solid, _, rgb = colours
    status = "running" if running else "done"
    parts = [
        f'<div class="mlsec-head" style="padding:10px 14px 10px 12px;background-color:rgba({rgb},.09);'
        f'border-bottom:1px solid {_RULE}">',
        f'<span class="mlsec-brand" style="float:right;margin-left:12px;font-size:11px;{_MUTED}">'
        f"mlsec \u00b7 {status}</span>",
        _pill(badge, colours, ";min-width:70px;font-size:11px;padding:2px 8px;margin-right:8px"),
        f'<span style="font-size:11px;{_MUTED};text-transform:uppercase;letter-spacing:.5px;'
        f'margin-right:6px">Risk card</span>',
        _user(card.subject, "mlsec-subject", TEXT_LIMIT,
              "font-weight:600;font-size:14px;overflow-wrap:break-word"),
        f'<div class="mlsec-verdict" style="margin-top:5px;font-size:12.5px">{_esc(verdict(card))}</div>',
    ]
    if running:
        parts.append(_progress_bar(card, solid))
    parts.append("</div>")
    return "".join(parts)


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = []
    items = list(metrics.items())
    cell = f"padding:2px 10px 2px 0;border-bottom:1px solid {_RULE};vertical-align:top"
    for key, value in items[:MAX_METRICS]:
        rows.append(
            f'<tr><td style="{cell};{_MUTED};white-space:nowrap">{_user(key, "mlsec-mkey", KEY_LIMIT)}</td>'
            f'<td style="{cell};{_MONO};font-size:11.5px;word-break:break-all">'
            f'{_user(format_value(value), "mlsec-mval", VALUE_LIMIT)}</td></tr>'
        )
    if len(items) > MAX_METRICS:
        rows.append(f'<tr><td colspan="2" style="padding:2px 0;{_MUTED}">'
                    f"{_esc(f'{ELLIPSIS} +{len(items) - MAX_METRICS} more metrics')}</td></tr>")
    return ('<table class="mlsec-metrics" style="border-collapse:collapse;margin:6px 0 4px 0;'
            f'font-size:12px;max-width:100%">{"".join(rows)}</table>')


def _trigger_grid(value: Any) -> list[list[bool]] | None:
    """``value`` as a grid of booleans if it is a valid trigger mask, else ``None``.

    Valid means exactly: a non-empty ``list`` of at most :data:`MAX_TRIGGER_SIDE` ``list`` rows of
    the same length (1 to :data:`MAX_TRIGGER_SIDE`), each item an ``int`` or ``bool`` equal to 0
    or 1 (no subclasses, numpy scalars, strings or floats), with at least one 1."""
    if type(value) is not list or not 1 <= len(value) <= MAX_TRIGGER_SIDE:
        return None
    first = value[0]
    if type(first) is not list or not 1 <= len(first) <= MAX_TRIGGER_SIDE:
        return None
    width = len(first)
    grid: list[list[bool]] = []
    for row in value:
        if type(row) is not list or len(row) != width:
            return None
        cells = []
        for v in row:
            if (type(v) is not int and type(v) is not bool) or (v != 0 and v != 1):
                return None
            cells.append(v == 1)
        grid.append(cells)
    return grid if any(any(row) for row in grid) else None


def _mask_rects(grid: list[list[bool]], limit: int = MAX_TRIGGER_RECTS
                ) -> list[tuple[int, int, int, int]] | None:
    """Cover the set cells of ``grid`` with rectangles ``(row, col, height, width)``: runs of set
    cells in a row, merged down while the rows below have the very same run. ``None`` when it
    takes more than ``limit`` rectangles."""
    rects: list[tuple[int, int, int, int]] = []
    open_runs: dict[tuple[int, int], int] = {}  # (first col, end col) -> first row
    for r, row in enumerate(grid + [[False] * len(grid[0])]):  # a blank row closes every run
        runs = set()
        c, width = 0, len(row)
        while c < width:
            if row[c]:
                start = c
                while c < width and row[c]:
                    c += 1
                runs.add((start, c))
            else:
                c += 1
        for run in [k for k in open_runs if k not in runs]:
            top = open_runs.pop(run)
            rects.append((top, run[0], r - top, run[1] - run[0]))
        for run in runs:
            open_runs.setdefault(run, r)
        if len(rects) + len(open_runs) > limit:
            return None
    return sorted(rects)


def _trigger_picture(metrics: dict[str, Any], colour: str) -> str:
    """The suspected trigger as a small picture (see the module doc), or ``""``."""
    try:
        grid = _trigger_grid(metrics.get("trigger_mask"))
        rects = _mask_rects(grid) if grid is not None else None
    except Exception:  # noqa: BLE001 - odd metric keys must never break the card
        return ""
    if grid is None or rects is None:
        return ""
    h, w = len(grid), len(grid[0])
    cell = max(3, min(14, TRIGGER_PICTURE_PX // max(h, w)))
    n_set = sum(sum(row) for row in grid)
    line = "rgba(127,127,127,0.45)"
    frame = (f"position:relative;box-sizing:content-box;width:{w * cell}px;height:{h * cell}px;"
             f"overflow:hidden;background-color:rgba(127,127,127,0.10);border:1px solid {line}")
    if cell >= 6:
        # a faint pixel grid: each cell's left and top line come from the background, so the frame
        # itself only draws the right and bottom edge (a sanitizer that drops gradients leaves the
        # plain frame: still readable)
        frame += (f";border-top-width:0;border-left-width:0;"
                  f"background-image:linear-gradient(to right,{line} 1px,transparent 1px),"
                  f"linear-gradient(to bottom,{line} 1px,transparent 1px);"
                  f"background-size:{cell}px {cell}px")
    blocks = "".join(
        f'<div class="mlsec-px" style="position:absolute;left:{c * cell}px;top:{r * cell}px;'
        f'width:{cw * cell}px;height:{rh * cell}px;background-color:{colour}"></div>'
        for r, c, rh, cw in rects
    )
    target = metrics.get("target_class")
    caption = f"{h}\u00d7{w} image"
    klass = ""
    if target is not None and not isinstance(target, (dict, list, tuple, set)):
        klass = f", target class '{_user(target, 'mlsec-trigger-class', LABEL_LIMIT)}'"
    value = metrics.get("trigger_value")
    value_text = ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value_text = f", value {format_value(value)}"
    swatch = (f'<span style="display:inline-block;width:9px;height:9px;margin-right:4px;'
              f'vertical-align:-1px;background-color:{colour}"></span>')
    pixels = f"{n_set:,} trigger pixel{'s' if n_set != 1 else ''}"
    return (
        '<div class="mlsec-trigger" style="margin:8px 0 8px 0">'
        '<div class="mlsec-trigger-caption" style="margin-bottom:5px;font-size:12px">'
        f'<span style="font-weight:600">Suspected trigger</span> ({_esc(caption)}{klass})</div>'
        f'<div class="mlsec-trigger-grid" style="{frame}">{blocks}</div>'
        f'<div class="mlsec-trigger-legend" style="margin-top:4px;font-size:11px;{_MUTED}">'
        f"{swatch}{_esc(pixels + value_text)}</div></div>"
    )


def _evidence(f: "Finding") -> str:
    parts = ['<div class="mlsec-evidence" style="padding:2px 14px 12px 38px;font-size:12.5px">']
    if f.recommendation:
        parts.append(
            '<div class="mlsec-rec" style="margin:4px 0 6px 0;padding:6px 10px;border-radius:4px;'
            'border-left:3px solid #2f6fdf;background-color:rgba(47,111,223,.10)">'
            '<strong style="font-weight:600">Recommendation: </strong>'
            f'{_user(f.recommendation, "mlsec-rec-text")}</div>'
        )
    metrics = dict(f.metrics)
    picture = _trigger_picture(metrics, _SEVERITY_COLOURS[f.severity][0]) if metrics else ""
    if picture:
        parts.append(picture)
        metrics.pop("trigger_mask", None)  # drawn above; as text it is only noise
    drawn = [p for p in (gauge(metrics), line_plot(metrics, _SEVERITY_COLOURS[f.severity][0]),
                         image_grid(metrics)) if p]
    parts += drawn
    for key in ("plot", "gauge", "images"):  # plot instructions, not evidence
        metrics.pop(key, None)
    if metrics:
        parts.append(_metrics_table(metrics))
    if f.indices:
        parts.append(
            f'<div class="mlsec-rows" style="margin-top:4px"><span style="{_MUTED}">Rows: </span>'
            f'<span style="{_MONO};font-size:11.5px">{_esc(format_rows(f.indices))}</span></div>'
        )
    if f.references:
        refs = list(f.references)
        chips = " \u00b7 ".join(_user(r, "mlsec-ref", LABEL_LIMIT) for r in refs[:MAX_REFERENCES])
        more = f" +{len(refs) - MAX_REFERENCES} more" if len(refs) > MAX_REFERENCES else ""
        parts.append(f'<div class="mlsec-refs" style="margin-top:4px;font-size:11.5px"><span style="{_MUTED}">'
                     f"Standards and references: </span>{chips}{_esc(more)}</div>")
    parts.append("</div>")
    return "".join(parts)


def _finding(f: "Finding", show_target: bool = False) -> str:
    colours = _SEVERITY_COLOURS[f.severity]
    target = ""
    if show_target and f.target:
        target = (f'<span style="{_MUTED};font-size:12px;margin-left:6px">on '
                  f'{_user(f.target, "mlsec-target", LABEL_LIMIT)}</span>')
    summary = ""
    if f.summary:
        summary = (f'<span class="mlsec-summary-line" style="display:block;margin:2px 0 0 80px;'
                   f'font-size:12.5px;{_MUTED}">{_user(f.summary, "mlsec-summary")}</span>')
    return (
        f'<details class="mlsec-finding mlsec-sev-{f.severity.label}" '
        f'style="border-top:1px solid {_RULE}">'
        '<summary style="padding:7px 14px 7px 12px;cursor:pointer;overflow-wrap:break-word">'
        f"{_pill(f.severity.label.upper(), colours)} "
        f'<code style="{_MONO};font-size:11.5px;{_MUTED};margin:0 4px">'
        f'{_user(f.check, "mlsec-check", LABEL_LIMIT)}</code> '
        f'{_user(f.title, "mlsec-title", TEXT_LIMIT, "font-weight:600")}{target}'
        f"{summary}</summary>{_evidence(f)}</details>"
    )


def _run_line(run: "CheckRun") -> str:
    label, colour = _RUN_BADGES.get(run.status, (run.status.value.upper(), "#6a737d"))
    prefix, message = run_parts(run)
    pill = (f'<span class="mlsec-run-status" style="{_PILL};min-width:74px;border:1px solid {colour};'
            f'color:{colour}">{_esc(label)}</span>')
    msg = _user(message, "mlsec-run-msg") if message else ""
    return (
        f'<div class="mlsec-run mlsec-run-{run.status.name.lower()}" style="padding:3px 14px 3px 12px;'
        f'font-size:12px">{pill} <code style="{_MONO};font-size:11.5px">'
        f'{_user(run_label(run), "mlsec-run-check", 2 * LABEL_LIMIT + 3)}</code> '
        f'<span style="{_MUTED}">{_esc(prefix)}</span>{msg}</div>'
    )


def _note_line(labels: list[str], note: str) -> str:
    return (f'<div class="mlsec-note"><span style="font-weight:600">Sampling</span> '
            f'{_user(", ".join(labels), "mlsec-note-checks")}: {_user(note, "mlsec-note-text")}</div>')


def _more(text: str, style: str = "") -> str:
    """A "… +N more" line (``text`` is built from counts and fixed words only)."""
    return (f'<div class="mlsec-more" style="padding:4px 14px 4px 12px;font-size:12px;{_MUTED};'
            f'{style}">{_esc(ELLIPSIS + " +" + text)}</div>')


def _bounded(parts: Iterable[str], budget: int) -> list[str]:
    """The leading ``parts`` that fit in ``budget`` UTF-8 bytes (the one that crosses it included).

    ``parts`` is consumed lazily, so nothing past the budget is rendered at all."""
    kept: list[str] = []
    used = 0
    for part in parts:
        if used > budget:
            break
        kept.append(part)
        used += len(part.encode("utf-8"))
    return kept


def _group_info(rows: list[str], findings: list["Finding"]) -> list[str]:
    """Issues stay one row each; two or more ``info`` rows (checked and clean, or context such as a
    fingerprint) fold into one expandable row, so the issues are what the eye meets first."""
    infos = [row for row, f in zip(rows, findings) if f.severity is Severity.INFO]
    if len(infos) < 2:
        return rows
    issues = [row for row, f in zip(rows, findings) if f.severity is not Severity.INFO]
    checks = sorted({f.check for f in findings[: len(rows)] if f.severity is Severity.INFO})
    label = (f"{len(infos)} info findings: "
             + ", ".join(checks[:6]) + (f" +{len(checks) - 6} more" if len(checks) > 6 else ""))
    group = (f'<details class="mlsec-info-group" style="border-top:1px solid {_RULE}">'
             f'<summary style="padding:6px 14px 6px 12px;cursor:pointer;font-size:12.5px;{_MUTED}">'
             f'{_esc(label)}</summary><div style="padding-left:10px">{"".join(infos)}</div></details>')
    return [*issues, group]


def _changes(card: "RiskCard") -> str:
    """What changed since the same cell's last run: a heading and one line a change."""
    changes = card.changes
    if changes is None:
        return ""
    lines = "".join(f'<li>{_user(line, "mlsec-change")}</li>' for line in changes.lines())
    body = f'<ul style="margin:2px 0 0;padding-left:20px">{lines}</ul>' if lines else ""
    return (f'<div class="mlsec-changes" style="padding:6px 14px 6px 12px;border-top:1px solid {_RULE};'
            f'font-size:12px"><span style="font-weight:600">{_esc(changes.heading())}</span>{body}</div>')


def card_html(card: "RiskCard", *, max_findings: int = MAX_FINDINGS, budget: int = FINDINGS_BUDGET) -> str:
    """The risk card as one self-contained, escaped HTML fragment (the ``text/html`` output).

    At most ``max_findings`` findings and about ``budget`` bytes of them are drawn (a report draws all)."""
    element_id = dom_id(card.card_id)
    findings, hidden = card.visible()
    show_target = card.several_targets
    runs = card.runs
    problems = problem_runs(card)
    status = "running" if card.status == "running" else "done"
    out = [
        f'<div id="{element_id}" class="mlsec-card mlsec-status-{status}" dir="ltr" lang="en" '
        f'style="{_FONT};font-size:13px;line-height:1.45;margin:6px 0;max-width:920px;'
        f'border:1px solid {_RULE};border-left:5px solid '
        f'{_card_colours(findings, status == "running", problems)[0][0]};border-radius:6px;'
        'overflow:hidden;text-align:left">',
        _style_block(element_id),
        _header(card, findings, problems),
        _changes(card),
    ]
    rows = _bounded((_finding(f, show_target) for f in findings[:max_findings]), budget)
    out.extend(_group_info(rows, findings))
    if len(rows) < len(findings):
        out.append(_more(f"{len(findings) - len(rows):,} more findings not shown here "
                         "(see the card JSON or a report)", f"border-top:1px solid {_RULE}"))
    if hidden:
        out.append(f'<div class="mlsec-hidden" style="padding:4px 14px 4px 12px;font-size:12px;{_MUTED};'
                   f'border-top:1px solid {_RULE}">{_esc(hidden_line(card, hidden))}</div>')
    if problems:
        lines = _bounded((_run_line(r) for r in problems[:MAX_RUN_LINES]), RUNS_BUDGET)
        out.append(f'<div class="mlsec-runs" style="padding:4px 0;border-top:1px solid {_RULE}">')
        out.extend(lines)
        if len(lines) < len(problems):
            out.append(_more(f"{len(problems) - len(lines):,} more checks did not finish normally"))
        out.append("</div>")
    notes = sampling_notes(runs)
    if notes:
        items = _bounded((_note_line(labels, note) for labels, note in notes[:MAX_NOTES]), NOTES_BUDGET)
        out.append(f'<div class="mlsec-notes" style="padding:6px 14px 6px 12px;'
                   f'border-top:1px solid {_RULE};font-size:11.5px;{_MUTED}">')
        out.extend(items)
        if len(items) < len(notes):
            out.append(_more(f"{len(notes) - len(items):,} more sampling notes", "padding:0"))
        out.append("</div>")
    out.append("</div>")
    return "".join(out)
