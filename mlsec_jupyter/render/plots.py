"""Small plots inside the HTML card, drawn with ``<div>`` elements only.

JupyterLab's sanitizer removes ``<svg>`` and ``<canvas>`` from untrusted outputs, and the card must
read the same everywhere, so plots are absolutely positioned blocks with px sizes and plain colours
(the same technique as the trigger picture in :mod:`mlsec_jupyter.render.html`).

A check asks for a plot through its finding's metrics (numbers, and labels that are cleaned with
:func:`~mlsec_jupyter.render.text.clean_text`, cut and escaped like all user text):

* ``metrics["plot"] = {"kind": "line", "x": "<metric key>", "y": "<metric key>", "x_label": …,
  "y_label": …, "log_x": False}`` — a line of dots over the two listed metrics (equal lengths,
  2–200 finite points);
* ``metrics["gauge"] = {"value": v, "limit": L, "label": …}`` — a bar filled to ``v / L``, red
  beyond the limit;
* ``metrics["images"] = {"kind": "images", "shape": [h, w], "pixels": [[h·w values in 0..1], …],
  "labels": ["0", "1", …], "caption": …}`` — a row of small greyscale pictures (0 black, 1 white;
  at most :data:`MAX_IMAGES` of at most :data:`MAX_IMAGE_SIDE` pixels a side, ``labels`` optional but
  then one per picture), e.g. the class representatives ``model.inversion`` reconstructs. Each
  picture is a frame whose background is its most common grey, plus one block per rectangle of
  pixels of another grey (runs merged down the rows); greys are quantised to 8 levels, or fewer when
  the pictures would take more than :data:`MAX_IMAGE_BLOCKS` blocks (~85 bytes each), and a spec
  that needs more even at 2 levels is not drawn. No ``<img>``, data URI or ``<svg>``: colours are
  ``#rrggbb`` hex, sizes px.

Anything malformed is not drawn (the numbers stay in the metrics table; ``images`` never goes there).
"""

from __future__ import annotations

import html
import math
from typing import Any

WIDTH, HEIGHT = 220, 90
MAX_POINTS = 200
#: Image grids: at most this many pictures, this many pixels a side, and blocks in all.
MAX_IMAGES = 10
MAX_IMAGE_SIDE = 16
MAX_IMAGE_BLOCKS = 500
#: A picture is about this many px on its longer side (cells 2–8 px).
IMAGE_PX = 64
#: Grey levels tried, finest first, until the blocks fit in :data:`MAX_IMAGE_BLOCKS`.
GREY_LEVELS = (8, 4, 2)
#: Longest picture label shown (code points).
IMAGE_LABEL_LIMIT = 24
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


def _image_spec(spec: Any) -> tuple[int, int, list[list[float]], list[str] | None] | None:
    """``(h, w, pictures, labels)`` from a valid ``images`` spec (see the module doc), else ``None``."""
    if not isinstance(spec, dict) or spec.get("kind") != "images":
        return None
    shape = spec.get("shape")
    if not isinstance(shape, (list, tuple)) or len(shape) != 2:
        return None
    if not all(type(s) is int and 1 <= s <= MAX_IMAGE_SIDE for s in shape):
        return None
    h, w = shape
    pixels = spec.get("pixels")
    if not isinstance(pixels, (list, tuple)) or not 1 <= len(pixels) <= MAX_IMAGES:
        return None
    pictures = []
    for picture in pixels:
        if not isinstance(picture, (list, tuple)) or len(picture) != h * w:
            return None
        values = []
        for v in picture:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                return None  # NaN fails the range test too
            values.append(float(v))
        pictures.append(values)
    labels = spec.get("labels")
    if labels is None:
        return h, w, pictures, None
    if not isinstance(labels, (list, tuple)) or len(labels) != len(pictures):
        return None
    if not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in labels):
        return None
    return h, w, pictures, [str(x) for x in labels]


def _grey_blocks(levels: list[int], h: int, w: int) -> tuple[int, list[tuple[int, int, int, int, int]]]:
    """The most common level of one picture, and ``(row, col, height, width, level)`` blocks covering
    every other pixel: runs of one level in a row, merged down while the next row has the same run."""
    counts: dict[int, int] = {}
    for q in levels:
        counts[q] = counts.get(q, 0) + 1
    background = max(sorted(counts), key=lambda q: counts[q])
    blocks: list[tuple[int, int, int, int, int]] = []
    open_runs: dict[tuple[int, int, int], int] = {}  # (first col, end col, level) -> first row
    for r in range(h + 1):
        runs = set()
        if r < h:
            row = levels[r * w:(r + 1) * w]
            c = 0
            while c < w:
                q, start = row[c], c
                while c < w and row[c] == q:
                    c += 1
                if q != background:
                    runs.add((start, c, q))
        for run in [k for k in open_runs if k not in runs]:
            top = open_runs.pop(run)
            blocks.append((top, run[0], r - top, run[1] - run[0], run[2]))
        for run in runs:
            open_runs.setdefault(run, r)
    return background, sorted(blocks)


def _grey(q: int, n_levels: int) -> str:
    g = round(255 * q / (n_levels - 1))
    return f"#{g:02x}{g:02x}{g:02x}"


def image_grid(metrics: dict[str, Any]) -> str:
    """The ``images`` a finding asked for (see the module doc), or ``""``."""
    from .text import clean_text

    parsed = _image_spec(metrics.get("images"))
    if parsed is None:
        return ""
    h, w, pictures, labels = parsed
    for n_levels in GREY_LEVELS:
        drawn = [_grey_blocks([round(v * (n_levels - 1)) for v in p], h, w) for p in pictures]
        if sum(len(blocks) for _, blocks in drawn) <= MAX_IMAGE_BLOCKS:
            break
    else:
        return ""
    cell = max(2, min(8, IMAGE_PX // max(h, w)))
    tiles = []
    for i, (background, blocks) in enumerate(drawn):
        pixels = "".join(
            f'<div style="position:absolute;left:{c * cell}px;top:{r * cell}px;'
            f'width:{bw * cell}px;height:{bh * cell}px;background-color:{_grey(q, n_levels)}"></div>'
            for r, c, bh, bw, q in blocks
        )
        frame = (f"position:relative;box-sizing:content-box;width:{w * cell}px;height:{h * cell}px;"
                 f"overflow:hidden;background-color:{_grey(background, n_levels)};border:1px solid {_LINE}")
        label = ""
        if labels is not None:
            text = html.escape(clean_text(labels[i], IMAGE_LABEL_LIMIT), quote=True)
            label = (f'<div class="mlsec-image-label" style="font-size:11px;width:{w * cell + 2}px;'
                     f'overflow:hidden;white-space:nowrap;text-align:center"><bdi>{text}</bdi></div>')
        tiles.append(f'<div class="mlsec-image" style="display:inline-block;margin-right:6px">'
                     f'<div class="mlsec-image-grid" style="{frame}">{pixels}</div>{label}</div>')
    caption = metrics["images"].get("caption")
    caption = html.escape(clean_text(caption if isinstance(caption, str) else "images", 60), quote=True)
    return (
        '<div class="mlsec-images" style="margin:8px 0">'
        f'<div style="font-size:11px;{_MUTED}">{caption} ({h}\u00d7{w}, black = lowest, white = highest '
        f'value)</div><div class="mlsec-image-row">{"".join(tiles)}</div></div>'
    )
