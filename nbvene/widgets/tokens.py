"""The token view: the prompt's tokens, each coloured by its value (e.g. the effect of patching
that position at one layer), with the heatmap's palette and tooltips."""

from __future__ import annotations

import pathlib

import anywidget
import traitlets

from nbvene.figures.palette import PALETTE, PALETTE_DARK, centre, scale
from nbvene.results import Result
from nbvene.widgets.frontend import esm
from nbvene.widgets.heatmap import meaning
from nbvene.widgets.transport import encode

HERE = pathlib.Path(__file__).parent


class TokenView(anywidget.AnyWidget):
    """Tokens coloured by a per-token value: a Result whose only axis left is `pos`; name one
    label for each other axis (`layer=3`, `head=1`, `panel="mlp"`).

    >>> TokenView(res, layer=3)
    """

    _esm = esm("tokens")
    _css = HERE / "heatmap.css"
    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    positions = traitlets.List(traitlets.Int()).tag(sync=True)
    values = traitlets.Dict().tag(sync=True)  # one float32 per token, as bytes
    title = traitlets.Unicode("").tag(sync=True)
    metric = traitlets.Unicode("").tag(sync=True)
    meaning = traitlets.Unicode("").tag(sync=True)
    centre_meaning = traitlets.Unicode("").tag(sync=True)
    stops = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    stops_dark = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)  # dark pages
    scale = traitlets.List(traitlets.Float()).tag(sync=True)

    def __init__(self, result: Result, **at):
        picked, title = _pick(result, at)
        pos = picked.axes[0]
        super().__init__(
            tokens=[str(t) for t in pos.labels],
            positions=list(pos.positions or range(len(pos.labels))),
            values=encode(picked.values),
            title=title,
            metric=result.metric or "value",
            meaning=meaning(result, str(at.get("panel", ""))),
            centre_meaning=centre(result).meaning,
            stops=[list(s) for s in PALETTE],
            stops_dark=[list(s) for s in PALETTE_DARK],
            # the whole result's scale: the same colour means the same value as in its heatmap
            scale=list(scale(result)),
        )


def _pick(result: Result, at: dict) -> tuple[Result, str]:
    """Slice `result` down to its `pos` axis at the labels in `at`."""
    names = [str(a) for a in result.axes]
    if "pos" not in names or result.values.dim() != len(names):
        raise ValueError(f"a token view needs a pos axis with one value per cell, got {names}")
    missing = [n for n in names if n != "pos" and n not in at]
    unknown = [n for n in at if n not in names or n == "pos"]
    if missing or unknown:
        raise ValueError(
            f"name one label for each axis but pos: {', '.join(f'{n}=…' for n in missing)}"
            + (f"; unknown: {unknown}" if unknown else "")
        )
    values, title = result.values, []
    for i in reversed(range(len(names))):  # from the last axis, so indices stay valid
        name = names[i]
        if name == "pos":
            continue
        labels = list(result.axes[i].labels)
        if at[name] not in labels:
            raise ValueError(f"{name}={at[name]!r} is not one of {labels}")
        values = values.select(i, labels.index(at[name]))
        title.insert(0, f"{name} {at[name]}")
    pos = result.axes[names.index("pos")]
    return Result(values, (pos,), result.spec, result.metric), " · ".join(title)
