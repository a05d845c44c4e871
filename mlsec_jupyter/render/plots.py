"""Small plots inside the HTML card, drawn with ``<div>`` elements only.

JupyterLab's sanitizer removes ``<svg>`` and ``<canvas>`` from untrusted outputs, and the card must
read the same everywhere, so plots are absolutely positioned blocks with px sizes and plain colours
(the same technique as the trigger picture in :mod:`mlsec_jupyter.render.html`).

A check asks for a plot through its finding's metrics (numbers only, so nothing here is user text):

* ``metrics["plot"] = {"kind": "line", "x": "<metric key>", "y": "<metric key>", "x_label": …,
  "y_label": …, "log_x": False}`` — a line of dots over the two listed metrics (equal lengths,
  2–200 finite points);
* ``metrics["gauge"] = {"value": v, "limit": L, "label": …}`` — a bar filled to ``v / L``, red
  beyond the limit.

Anything malformed is not drawn (the numbers stay in the metrics table).
"""

from __future__ import annotations

import html
import math
from typing import Any

WIDTH, HEIGHT = 220, 90
MAX_POINTS = 200
_LINE = "rgba(127,127,127,0.45)"
_MUTED = "color:#656d76;color:var(--jp-ui-font-color2,#656d76)"


def _numbers(value: Any) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= MAX_POINTS:
        return None
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        out.append(float(v))
    return out


def _label(value: Any, default: str) -> str:
    text = value if isinstance(value, str) else default
    return html.escape(text[:40], quote=True)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def line_plot(metrics: dict[str, Any], colour: str) -> str:
    """The ``plot`` a finding asked for (see the module doc), or ``""``."""
    spec = metrics.get("plot")
    if not isinstance(spec, dict) or spec.get("kind") != "line":
        return ""
    xs, ys = _numbers(metrics.get(spec.get("x"))), _numbers(metrics.get(spec.get("y")))
    if xs is None or ys is None or len(xs) != len(ys):
        return ""
    log_x = bool(spec.get("log_x"))
    if log_x:
        if min(xs) <= 0:
            return ""
        xs = [math.log10(x) for x in xs]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(0.0, min(ys)), max(ys)
    if x1 <= x0 or y1 <= y0:
        return ""
    dots = "".join(
        f'<div style="position:absolute;left:{round((x - x0) / (x1 - x0) * (WIDTH - 4))}px;'
        f'top:{round((1 - (y - y0) / (y1 - y0)) * (HEIGHT - 4))}px;width:4px;height:4px;'
        f'background-color:{colour}"></div>'
        for x, y in zip(xs, ys)
    )
    frame = f"position:relative;width:{WIDTH}px;height:{HEIGHT}px;border:1px solid {_LINE}"
    x_text = _label(spec.get("x_label"), "x") + (" (log scale)" if log_x else "")
    lo, hi = (10 ** x0, 10 ** x1) if log_x else (x0, x1)
    return (
        '<div class="mlsec-plot" style="margin:8px 0">'
        f'<div style="font-size:11px;{_MUTED}">{_label(spec.get("y_label"), "y")}: {_fmt(y0)} – {_fmt(y1)}</div>'
        f'<div class="mlsec-plot-area" style="{frame}">{dots}</div>'
        f'<div style="font-size:11px;{_MUTED}">{x_text}: {_fmt(lo)} – {_fmt(hi)}</div></div>'
    )


def gauge(metrics: dict[str, Any]) -> str:
    """The ``gauge`` a finding asked for (see the module doc), or ``""``."""
    spec = metrics.get("gauge")
    if not isinstance(spec, dict):
        return ""
    value, limit = spec.get("value"), spec.get("limit")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (value, limit)):
        return ""
    if limit <= 0 or value < 0:
        return ""
    share = value / limit
    fill = "#cf222e" if share > 1 else "#bf8700" if share >= 0.8 else "#1a7f37"
    width = round(min(share, 1.0) * WIDTH)
    return (
        '<div class="mlsec-gauge" style="margin:8px 0">'
        f'<div style="font-size:11px;{_MUTED}">{_label(spec.get("label"), "used")}: {_fmt(value)} / {_fmt(limit)} '
        f'({100 * share:.0f}%)</div>'
        f'<div class="mlsec-gauge-bar" style="position:relative;width:{WIDTH}px;height:10px;border:1px solid {_LINE};'
        f'overflow:hidden"><div style="position:absolute;left:0px;top:0px;width:{width}px;height:10px;'
        f'background-color:{fill}"></div></div></div>'
    )
