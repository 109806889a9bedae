"""The figure of a Result as an Altair (Vega-Lite) chart, and as a PNG rendered offline by
vl-convert. Same View as the SVG: same palette and centre, same facets, the same tooltips."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from nbvene.errors import NbveneError
from nbvene.figures.palette import PALETTE
from nbvene.figures.view import View, attribute, view_of, visible

if TYPE_CHECKING:
    from nbvene.results import Result

WIDTH = 720
"""The width the facets of a chart share, as in the SVG: cells are 8 to 16 px wide, and rows
of tokens at least 14 px tall, so every token keeps its label."""


def to_altair(result: Result):
    """An Altair chart of `result`: a heatmap per facet, a token strip, or a bar chart.

    >>> chart = nv.figures.to_altair(res)     # or res.to_altair()
    >>> chart.save("trace.svg")                # altair's own exporters work too
    """
    alt = _require("altair", "altair")
    view = view_of(result)
    if view.kind == "text":
        raise NbveneError(
            "collected activations have no single value per cell to chart",
            hint="plot a reduction of res.values yourself, e.g. its norm over the unit's axis",
        )
    data = alt.Data(values=_rows(view))
    colour = alt.Color(
        "value:Q",
        scale=_colour_scale(alt, view),
        legend=alt.Legend(
            title=view.metric, orient="bottom", direction="horizontal", gradientLength=220
        ),
    )
    tooltip = _tooltip(alt, view)
    title = alt.TitleParams(_title(view), subtitle=f"centre {view.centre.meaning}", anchor="start")
    if view.kind == "bars":
        return _bars(alt, view, data, colour, tooltip).properties(title=title)
    if view.kind == "tokens":
        return _tokens(alt, view, data, colour, tooltip).properties(title=title)
    rows, cols = view.rows, view.cols
    cell = max(8, min(16, WIDTH // (view.columns * len(cols.labels))))
    row_h = max(cell, 14) if rows == "pos" else cell
    base = (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X(
                "col:O",
                title=str(cols),
                axis=_axis(alt, view, cols, labelAngle=0, labelOverlap=True),
            ),
            y=alt.Y("row:O", title=str(rows), axis=_axis(alt, view, rows)),
            color=colour,
            tooltip=tooltip,
        )
        .properties(width=cell * len(cols.labels), height=row_h * len(rows.labels))
    )
    if not view.facet_axes:
        return base.properties(title=title)
    titles = [view.facet_title(f) for f in range(len(view.facets))]
    facet = alt.Facet("facet:N", sort=titles, title=None)
    return base.facet(facet=facet, columns=view.columns).properties(title=title)


def png(result: Result, *, scale: float = 2.0) -> bytes:
    """The Altair chart of `result` as PNG bytes, rendered by vl-convert (no browser, no
    network). `scale` multiplies the chart's pixel size."""
    chart = to_altair(result)
    vl_convert = _require("vl_convert", "vl-convert-python")
    # the spec is validated where it is built (tests); validating every data row again here
    # takes seconds on a large sweep
    return vl_convert.vegalite_to_png(chart.to_json(validate=False), scale=scale)


def _require(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        raise NbveneError(
            f"this figure needs the {package!r} package, which is not installed",
            hint=f'pip install {package}   (or pip install "nbvene[plot]" for all figure exports)',
        ) from None


def _title(view: View) -> str:
    action = view.action({})
    return f"{view.metric} · {action}" if action else view.metric


def _rows(view: View) -> list[dict]:
    """One data row per cell: its place in the view, its coordinates by axis name (the token
    text beside a position), its value (None for NaN) and its tooltip text."""
    axes = {str(a): a for a in view.result.axes}
    rows = []
    for cell in view.cells():
        row = {
            "facet": view.facet_title(cell.facet),
            "row": cell.row,
            "col": cell.col,
            "value": cell.value if math.isfinite(cell.value) else None,
            "meaning": view.describe(cell).split("\n")[0],
        }
        for name, i in cell.coords:
            row[name] = attribute(axes[name], i)
            if name == "pos":
                row["token"] = visible(str(axes[name].labels[i]))
        rows.append(row)
    return rows


def _tooltip(alt, view: View) -> list:
    fields = []
    for axis in view.result.axes:
        fields.append(alt.Tooltip(f"{axis}:N", title=str(axis)))
        if axis == "pos":
            fields.append(alt.Tooltip("token:N", title="token"))
    return [
        *fields,
        alt.Tooltip("value:Q", title=view.metric, format=".7g"),
        alt.Tooltip("meaning:N", title="cell"),
    ]


def _colour_scale(alt, view: View):
    """The palette's stops at evenly spaced values from `centre - half` to `centre + half`,
    interpolated in RGB: the same colour for the same value as `palette.colour`."""
    mid, half = view.scale.centre, view.scale.half
    n = len(PALETTE) - 1
    return alt.Scale(
        domain=[mid - half + 2 * half * i / n for i in range(n + 1)],
        range=["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in PALETTE],
        interpolate="rgb",
        clamp=True,
    )


def _axis(alt, view: View, axis, **kwargs):
    """Axis labels from the Result's labels (token text with visible whitespace for `pos`),
    looked up by index so repeated tokens keep their own rows."""
    labels = [visible(str(label)) if axis == "pos" else str(label) for label in axis.labels]
    if axis == "pos":
        kwargs["labelFont"] = "monospace"
    return alt.Axis(labelExpr=f"[{','.join(map(_literal, labels))}][datum.value]", **kwargs)


def _literal(text: str) -> str:
    """A string as a Vega expression, one character at a time: Vega 6 rejects some string
    literals outright (a token "if" gives 'Unrecognized signal name: "if"')."""
    return "+".join(json.dumps(ch, ensure_ascii=False) for ch in text) or '""'


def _tokens(alt, view: View, data, colour, tooltip):
    """The prompt as a strip of coloured cells, each with its token written on it."""
    axis = view.cols
    width = max(len(visible(str(label))) for label in axis.labels) * 7 + 8
    x = alt.X("col:O", title=None, axis=None)
    base = alt.Chart(data).encode(x=x, tooltip=tooltip)
    cells = base.mark_rect(stroke="#ffffff").encode(color=colour)
    text = base.mark_text(font="monospace").encode(text="token:N")
    return (cells + text).properties(width=width * len(axis.labels), height=24)


def _bars(alt, view: View, data, colour, tooltip):
    """Bars from the centre value to each value, coloured like the heatmap's cells."""
    axis = view.cols
    x = (
        alt.X("col:O", title=str(axis), axis=_axis(alt, view, axis, labelAngle=0))
        if axis is not None
        else alt.X("col:O", title=None, axis=None)
    )
    mid = view.centre.value
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("value:Q", title=view.metric, scale=alt.Scale(zero=False)),
            y2=alt.Y2(datum=mid),
            color=colour,
            tooltip=tooltip,
        )
    )
    one = alt.Data(values=[{}])  # a single rule, not one per cell
    rule = alt.Chart(one).mark_rule(strokeDash=[4, 3], color="#888888").encode(y=alt.Y(datum=mid))
    n = len(axis.labels) if axis is not None else 1
    return (bars + rule).properties(width=max(60, min(24 * n, 640)), height=160)
