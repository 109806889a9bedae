"""Results as standalone SVG, in pure Python: heatmaps with facets, token views and bar charts,
each with a legend and a tooltip per cell. This is the static image a saved notebook shows on
GitHub and nbviewer, and the figure `save_html` writes."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import zlib
from html import escape
from typing import TYPE_CHECKING

import torch

from nbvene.figures.palette import Scale, colour, ticks
from nbvene.figures.view import Cell, View, attribute, subject_positions, title, view_of, visible

if TYPE_CHECKING:
    from nbvene.results import Result

FONT = 11
CHAR = 0.62 * FONT
"""Width of one monospace character at FONT px (SVG cannot measure text, so we estimate)."""
WIDTH = 760
"""The width a figure aims for: a notebook output column."""
MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
GAP = 16
TOOLTIPS = 400
"""Above this many heatmap cells a facet is drawn as one image, a pixel per cell, with its values
beside it as a compact buffer (`data-values`, base64 float32): a rect and tooltip per cell take
about 300 bytes, which would make a 30 layers × 45 tokens trace over a megabyte and a 32 × 200
one six; at most this many, every cell is an addressable rect with its tooltip (120 KB)."""
LABEL_CHARS = 18
"""Longer token labels are cut with an ellipsis (the tooltip has the whole token)."""


def svg(result: Result) -> str:
    """The Result as an SVG document (a string): a heatmap per facet for 2-D and larger
    results, a token view for a single position axis, a bar chart for any other single axis.

    >>> open("trace.svg", "w").write(nv.figures.svg(res))
    """
    view = view_of(result)
    draw = {"heatmap": _heatmap, "tokens": _tokens, "bars": _bars, "text": _text}[view.kind]
    body, width, height = draw(view)
    width = max(width, len(_headline(view)) * CHAR + 16)  # the bold headline fits too
    title = _esc(_headline(view))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="{FONT}" '
        f'role="img" class="nbvene-figure" data-kind="{view.kind}">'
        f'<title>{title}</title><rect width="100%" height="100%" fill="#ffffff"/>'
        f"{body}</svg>"
    )


def _headline(view: View) -> str:
    return title(view.result)


def _header(view: View) -> tuple[str, float]:
    return f'<text x="8" y="16" font-weight="bold">{_esc(_headline(view))}</text>', 26.0


# --- heatmaps ---------------------------------------------------------------------------------


def _heatmap(view: View) -> tuple[str, float, float]:
    rows, cols = view.rows, view.cols
    n_rows, n_cols = len(rows.labels), len(cols.labels)
    row_text = [_row_label(rows, i) for i in range(n_rows)]
    label_w = max(*(len(t) for t in row_text), len(rows)) * CHAR + 8  # labels and axis name
    per_row = view.columns
    cell = _clamp((WIDTH - label_w - GAP * per_row) / (per_row * n_cols), 8, 18)
    col_text = [str(label) for label in cols.labels]
    rotate = max(len(t) for t in col_text) > 3
    col_h = (max(len(t) for t in col_text) * CHAR if rotate else FONT) + 6
    # every token gets its label: token rows are never shorter than a line of text
    row_h = max(cell, FONT + 3) if rows == "pos" else cell
    facet_w = n_cols * cell + GAP
    title_h = 16 if view.facet_axes else 0
    facet_h = title_h + col_h + n_rows * row_h + 22
    parts, top = _header(view)
    parts = [parts]
    cells = view.cells()
    n_facets = len(view.facets)
    subject = subject_positions(view.result) if rows == "pos" else frozenset()
    for f in range(n_facets):
        fx = 8 + label_w + (f % per_row) * facet_w
        fy = top + (f // per_row) * facet_h
        grid_y = fy + title_h + col_h
        if f % per_row == 0:
            parts.append(_row_labels(rows, row_text, 8 + label_w - 6, grid_y, row_h, subject))
        if view.facet_axes:
            parts.append(
                f'<text x="{fx:.1f}" y="{fy + 11:.1f}" font-weight="bold" class="facet">'
                f"{_esc(view.facet_title(f))}</text>"
            )
        parts.append(_col_labels(col_text, fx, grid_y - 4, cell, rotate))
        facet_cells = cells[f * n_rows * n_cols : (f + 1) * n_rows * n_cols]
        if len(cells) > TOOLTIPS:
            parts.append(_image(view, facet_cells, fx, grid_y, n_cols * cell, n_rows * row_h))
        for c in facet_cells if len(cells) <= TOOLTIPS else ():
            x, y = fx + c.col * cell, grid_y + c.row * row_h
            parts.append(_cell_rect(view, c, x, y, cell, row_h))
        parts.append(
            f'<text x="{fx + n_cols * cell / 2:.1f}" y="{grid_y + n_rows * row_h + 14:.1f}" '
            f'text-anchor="middle" fill="#555">{_esc(str(cols))}</text>'
        )
    parts.append(
        f'<text x="{8 + label_w - 6:.1f}" y="{top + title_h + col_h - 4:.1f}" text-anchor="end" '
        f'fill="#555">{_esc(str(rows))}</text>'
    )
    height = top + math.ceil(n_facets / per_row) * facet_h
    width = 8 + label_w + min(per_row, n_facets) * facet_w
    legend, legend_w, legend_h = _legend(view, 8, height + 4)
    parts.append(legend)
    return "".join(parts), max(width, legend_w), height + 4 + legend_h


def _image(view: View, cells: list[Cell], x: float, y: float, w: float, h: float) -> str:
    """A large facet as one image, a pixel per cell in the palette's exact colour, drawn
    without smoothing; its values beside it (`data-values`: base64 float32, `data-shape`)."""
    n_rows, n_cols = max(c.row for c in cells) + 1, max(c.col for c in cells) + 1
    pixels = [bytearray(3 * n_cols) for _ in range(n_rows)]
    for c in cells:
        pixels[c.row][3 * c.col : 3 * c.col + 3] = bytes.fromhex(colour(c.value, view.scale)[1:])
    values = torch.tensor([c.value for c in cells], dtype=torch.float32).numpy().tobytes()
    png = base64.b64encode(_png(pixels, n_cols, n_rows)).decode()
    return (
        f'<image class="cells" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'preserveAspectRatio="none" style="image-rendering:crisp-edges;image-rendering:pixelated" '
        f'data-shape="{n_rows} {n_cols}" data-values="{base64.b64encode(values).decode()}" '
        f'href="data:image/png;base64,{png}"/>'
    )


def _png(rows: list[bytearray], width: int, height: int) -> bytes:
    """8-bit RGB rows as a PNG file (no filter, deflated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(row) for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _row_label(axis, i: int) -> str:
    text = visible(str(axis.labels[i])) if axis == "pos" else str(axis.labels[i])
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _row_labels(
    axis, texts: list[str], right: float, top: float, cell: float, subject=frozenset()
) -> str:
    """The row labels, every one that fits without overlapping; the corrupted subject's tokens
    bold and starred, as in ROME's figures."""
    font = f' font-family="{MONO}"' if axis == "pos" else ""
    step = math.ceil(FONT / cell)  # skip labels that would overlap on small cells
    out = []
    for i, text in enumerate(texts):
        if i % step:
            continue
        # the index (and the whole token) on hover, the visible token as the label
        hover = _esc(f"{axis} {attribute(axis, i)}: {visible(str(axis.labels[i]))!r}")
        mark = ' font-weight="bold"' if i in subject else ""
        out.append(
            f'<text x="{right:.1f}" y="{top + i * cell + cell / 2 + FONT * 0.35:.1f}" '
            f'text-anchor="end"{font}{mark} xml:space="preserve" class="row-label">'
            f"<title>{hover}</title>{_esc(text)}{'*' if i in subject else ''}</text>"
        )
    return "".join(out)


def _col_labels(texts: list[str], left: float, bottom: float, cell: float, rotate: bool) -> str:
    # skip labels that would overlap on small cells
    step = math.ceil((FONT if rotate else max(len(t) for t in texts) * CHAR + 2) / cell)
    out = []
    for j, text in enumerate(texts):
        if j % step:
            continue
        x = left + j * cell + cell / 2
        if rotate:
            out.append(
                f'<text transform="translate({x + FONT * 0.35:.1f},{bottom:.1f}) rotate(-90)" '
                f'class="col-label">{_esc(text)}</text>'
            )
        else:
            out.append(
                f'<text x="{x:.1f}" y="{bottom:.1f}" text-anchor="middle" font-size="{FONT - 1}" '
                f'class="col-label">{_esc(text)}</text>'
            )
    return "".join(out)


def _cell_rect(view: View, cell: Cell, x: float, y: float, w: float, h: float) -> str:
    return (
        f'<rect class="cell" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" '
        f'fill="{colour(cell.value, view.scale)}"{_data(view, cell)}>'
        f"<title>{_esc(view.describe(cell))}</title></rect>"
    )


def _n(v: float) -> str:
    """A coordinate in as few characters as it needs: `12`, `12.5`."""
    return f"{v:.1f}".removesuffix(".0")


def _data(view: View, cell: Cell) -> str:
    """`data-layer="3" data-pos="4" data-value="0.4321"`: cells addressable by their coordinates."""
    axes = {str(a): a for a in view.result.axes}
    coords = "".join(f' data-{name}="{_esc(attribute(axes[name], i))}"' for name, i in cell.coords)
    return f'{coords} data-value="{cell.value:.9g}"'


# --- token view -------------------------------------------------------------------------------


def _tokens(view: View) -> tuple[str, float, float]:
    """The prompt's tokens in a row, wrapped at WIDTH, each coloured by its value."""
    parts, top = _header(view)
    parts = [parts]
    axis = view.cols
    x, y, height, right = 8.0, top, 22.0, 0.0
    for cell in view.cells():
        text = visible(str(axis.labels[cell.col])) or "∅"
        w = len(text) * CHAR + 8
        if x + w > WIDTH and x > 8:
            x, y = 8.0, y + height + 4
        fill = colour(cell.value, view.scale)
        parts.append(
            f'<g class="token"><title>{_esc(view.describe(cell))}</title>'
            f'<rect class="cell" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{height:.0f}" '
            f'rx="3" fill="{fill}"{_data(view, cell)}/>'
            f'<text x="{x + 4:.1f}" y="{y + 15:.1f}" font-family="{MONO}" xml:space="preserve" '
            f'fill="{_ink(fill)}">{_esc(text)}</text></g>'
        )
        right = max(right, x + w)
        x += w + 3
    bottom = y + height + 10
    legend, legend_w, legend_h = _legend(view, 8, bottom)
    parts.append(legend)
    return "".join(parts), max(right + 8, legend_w), bottom + legend_h


def _ink(fill: str) -> str:
    """Black text on light cells, white on dark ones (relative luminance, WCAG)."""
    r, g, b = (int(fill[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "#ffffff"


# --- bar charts -------------------------------------------------------------------------------


def _bars(view: View) -> tuple[str, float, float]:
    """One bar per label (or one for a scalar), drawn from the centre value to the cell's value,
    so bars above and below the baseline read like the heatmap's red and blue."""
    parts, top = _header(view)
    parts = [parts]
    cells = view.cells()
    axis = view.cols
    labels = [str(label) for label in axis.labels] if axis is not None else [view.metric]
    finite = [c.value for c in cells if math.isfinite(c.value)]
    mid = view.centre.value
    low, high = min([*finite, mid]), max([*finite, mid])
    if high == low:
        low, high = low - 1, high + 1
    plot_h, left = 160.0, 8 + 8 * CHAR
    bar = _clamp((WIDTH - left) / len(cells), 6, 48)

    def y_of(v: float) -> float:
        return top + 8 + (high - v) / (high - low) * plot_h

    # round gridlines with their labels (none closer than a line of text), and the centre
    # dashed: the value each bar starts from
    last = math.inf
    for tick in ticks(Scale(low, mid, high)):
        y = y_of(tick)
        label = f"{tick:.4g}" if last - y >= FONT + 2 else ""
        last = y if label else last
        parts.append(
            f'<line x1="{left:.1f}" x2="{left + bar * len(cells):.1f}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 4:.1f}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{label}</text>'
            if label
            else f'<line x1="{left:.1f}" x2="{left + bar * len(cells):.1f}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#ddd"/>'
        )
    parts.append(
        f'<line x1="{left:.1f}" x2="{left + bar * len(cells):.1f}" y1="{y_of(mid):.1f}" '
        f'y2="{y_of(mid):.1f}" stroke="#888" stroke-dasharray="4 3"/>'
    )
    step = math.ceil(max(len(t) for t in labels) * CHAR / bar)
    for c in cells:
        x = left + c.col * bar
        value = c.value if math.isfinite(c.value) else mid
        y0, y1 = sorted((y_of(mid), y_of(value)))
        parts.append(_cell_rect(view, c, x + 1, y0, bar - 2, max(y1 - y0, 1.0)))
        if len(cells) <= 12:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{(y0 - 3 if value >= mid else y1 + 11):.1f}" '
                f'text-anchor="middle" font-size="{FONT - 1}">{c.value:.3g}</text>'
            )
        if c.col % step == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 26:.1f}" text-anchor="middle" '
                f'class="col-label">{_esc(labels[c.col])}</text>'
            )
    bottom = top + plot_h + 32
    if axis is not None:
        parts.append(
            f'<text x="{left + bar * len(cells) / 2:.1f}" y="{bottom + 6:.1f}" '
            f'text-anchor="middle" fill="#555">{_esc(str(axis))}</text>'
        )
    legend, legend_w, legend_h = _legend(view, 8, bottom + 14)
    parts.append(legend)
    width = max(left + bar * len(cells) + 16, legend_w)
    return "".join(parts), width, bottom + 14 + legend_h


# --- anything else ----------------------------------------------------------------------------


def _text(view: View) -> tuple[str, float, float]:
    """No single value per cell (collected activations): the text summary, as text."""
    lines = repr(view.result).splitlines()
    body = "".join(
        f'<text x="8" y="{18 + 15 * i}" font-family="{MONO}" xml:space="preserve">'
        f"{_esc(visible_line)}</text>"
        for i, visible_line in enumerate(lines)
    )
    return body, max(len(line) for line in lines) * CHAR + 16, 18 + 15 * len(lines)


# --- legend -----------------------------------------------------------------------------------


def _legend(view: View, x: float, y: float) -> tuple[str, float, float]:
    """The colour bar: the metric as its title, the ramp from `lo` to `hi` (only the part of
    the palette the scale uses), at least five round ticks, and the centre marked and said."""
    scale = view.scale
    lo, mid, hi = scale
    key = hashlib.sha1(f"{lo!r}{mid!r}{hi!r}".encode()).hexdigest()[:10]
    stops = "".join(
        f'<stop offset="{i / 20:.2f}" stop-color="{colour(lo + (hi - lo) * i / 20, scale)}"/>'
        for i in range(21)
    )
    w = 300.0

    def at(v: float) -> float:
        return x + w * (v - lo) / ((hi - lo) or 1.0)

    marks, right = [], -math.inf
    for t in ticks(scale):
        text = f"{t:.4g}"
        half = len(text) * CHAR * (FONT - 1) / FONT / 2
        marks.append(
            f'<line x1="{at(t):.1f}" x2="{at(t):.1f}" y1="{y + 26:.1f}" y2="{y + 29:.1f}" '
            f'stroke="#555"/>'
        )
        if at(t) - half < right + 4:  # its label would touch the one before: mark only
            continue
        right = at(t) + half
        marks.append(
            f'<text x="{at(t):.1f}" y="{y + 40:.1f}" text-anchor="middle" '
            f'font-size="{FONT - 1}" class="tick">{text}</text>'
        )
    note = f"centre {view.centre.meaning}"
    return (
        f'<g class="legend"><defs><linearGradient id="nv-{key}">{stops}</linearGradient></defs>'
        f'<text x="{x:.1f}" y="{y + 10:.1f}" font-weight="bold" class="legend-title">'
        f"{_esc(view.metric)}</text>"
        f'<rect x="{x:.1f}" y="{y + 16:.1f}" width="{w:.0f}" height="10" fill="url(#nv-{key})" '
        f'stroke="#999" stroke-width="0.5"/>'
        f'<line x1="{at(mid):.1f}" x2="{at(mid):.1f}" y1="{y + 13:.1f}" y2="{y + 29:.1f}" '
        f'stroke="#333"/>{"".join(marks)}'
        f'<text x="{x + w + 14:.1f}" y="{y + 25:.1f}" fill="#555">{_esc(note)}</text></g>',
        x + w + 14 + len(note) * CHAR + 8,
        46.0,
    )


def _esc(text: str) -> str:
    """Text for XML: markup escaped, and characters XML cannot hold replaced."""
    return escape(_NOT_XML.sub("\ufffd", text))


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clamp(v: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, math.floor(v)))
