"""The heatmap widget: any 2-D slice of a Result (layers × tokens, layers × heads, heads ×
tokens), one facet per extra axis, coloured like the static figures, filled in live during a
sweep, and a click on a cell re-runs that cell in the kernel to show its top predictions."""

from __future__ import annotations

import pathlib
import time

import anywidget
import torch
import traitlets

from nbvene.figures.palette import PALETTE, centre, scale
from nbvene.results import Result
from nbvene.widgets.frontend import esm
from nbvene.widgets.transport import encode

HERE = pathlib.Path(__file__).parent
TOP_K = 5


class Heatmap(anywidget.AnyWidget):
    """A Result as a grid of coloured cells per facet; state in traits, values as bytes.

    >>> hm = Heatmap(res)          # or nbvene.widgets.view(res)
    >>> hm.selected = {"facet": 0, "row": 4, "col": 2}   # what a click sets
    >>> hm.detail["patched"]["top"][0]
    {'token': ' Paris', 'p': 0.41}
    """

    _esm = esm("heatmap")
    _css = HERE / "heatmap.css"
    # facets × rows × columns, float32 bytes; NaN = not run (yet)
    values = traitlets.Dict().tag(sync=True)
    facet_axis = traitlets.Unicode("").tag(sync=True)
    facets = traitlets.List(traitlets.Unicode()).tag(sync=True)
    row_axis = traitlets.Unicode().tag(sync=True)
    col_axis = traitlets.Unicode().tag(sync=True)
    row_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    col_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    # what the data-layer / data-pos / data-head attributes hold: layer and head numbers,
    # and for tokens their position in the prompt
    row_keys = traitlets.List(traitlets.Int()).tag(sync=True)
    col_keys = traitlets.List(traitlets.Int()).tag(sync=True)
    metric = traitlets.Unicode("").tag(sync=True)
    meaning = traitlets.Unicode("").tag(sync=True)  # what one cell's value is
    centre_meaning = traitlets.Unicode("").tag(sync=True)
    stops = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    scale = traitlets.List(traitlets.Float()).tag(sync=True)  # lo, centre, hi
    # {"state": "idle"|"running"|"stopped"|"done", "done": n, "total": n, "eta": seconds}
    progress = traitlets.Dict({"state": "idle"}).tag(sync=True)
    stop = traitlets.Bool(False).tag(sync=True)  # the browser's Stop button sets it
    # whether a Stop click reaches the kernel while the sweep runs (see widgets/kernel.py);
    # if not, the widget says to interrupt the kernel instead
    stoppable = traitlets.Bool(False).tag(sync=True)
    selected = traitlets.Dict().tag(sync=True)  # the browser: {"facet", "row", "col"}
    detail = traitlets.Dict().tag(sync=True)  # the kernel's answer to a click

    def __init__(self, result: Result, **kwargs):
        self._layout = Layout.of(result)
        lay = self._layout
        super().__init__(
            facet_axis=lay.facet_name,
            facets=lay.facet_labels,
            row_axis=lay.row_name,
            col_axis=lay.col_name,
            row_labels=lay.labels(lay.row),
            col_labels=lay.labels(lay.col),
            row_keys=lay.keys(lay.row),
            col_keys=lay.keys(lay.col),
            metric=result.metric or "value",
            meaning=meaning(result),
            stops=[list(s) for s in PALETTE],
            **kwargs,
        )
        self.show(result)
        self.observe(self._on_select, "selected")

    def show(self, result: Result) -> None:
        """Draw `result`'s values (a partial result during a sweep: NaN cells stay grey)."""
        self.result = result
        with self.hold_sync():
            self.values = encode(self._layout.grid(result.values))
            self.scale = list(scale(result))
            self.centre_meaning = centre(result).meaning

    def _on_select(self, change) -> None:
        cell = change["new"]
        if not cell or self.progress.get("state") == "running":
            return  # a sweep is still using the model; the browser does not send these
        try:
            index = self._layout.index(cell["facet"], cell["row"], cell["col"])
            self.detail = {"cell": cell, "status": "computing"}
            self.detail = {"cell": cell, "status": "ready", **cell_detail(self.result, index)}
        except Exception as e:  # shown in the widget: a click must not print a traceback
            self.detail = {"cell": cell, "status": "error", "error": f"{type(e).__name__}: {e}"}


class Layout:
    """Which Result axis becomes the facets, the rows and the columns of the grid: tokens down
    the side, layers (or heads) across, one facet per value of a third axis."""

    def __init__(self, result: Result, facet: int | None, row: int, col: int | None):
        self.axes = result.axes
        self.facet, self.row, self.col = facet, row, col
        self.facet_name = "" if facet is None else str(self.axes[facet])
        self.facet_labels = [""] if facet is None else self.labels(facet)
        self.row_name = str(self.axes[row])
        self.col_name = "value" if col is None else str(self.axes[col])

    @classmethod
    def of(cls, result: Result) -> Layout:
        dims = len(result.axes)
        if result.values.dim() != dims or not 1 <= dims <= 3:
            raise ValueError(
                f"a heatmap needs 1 to 3 axes with one value per cell, got {result!r:.80}"
            )
        if dims == 1:
            return cls(result, None, 0, None)
        first, second = dims - 2, dims - 1
        facet = 0 if dims == 3 else None
        if result.axes[second] == "pos":  # tokens down the side
            first, second = second, first
        return cls(result, facet, first, second)

    def labels(self, axis: int | None) -> list[str]:
        if axis is None:
            return ["value"]
        return [str(x) for x in self.axes[axis].labels]

    def keys(self, axis: int | None) -> list[int]:
        if axis is None:
            return [0]
        a = self.axes[axis]
        if a == "pos" and a.positions:
            return [int(p) for p in a.positions]
        return [int(x) if isinstance(x, int) else i for i, x in enumerate(a.labels)]

    def grid(self, values: torch.Tensor) -> torch.Tensor:
        """The values as facets × rows × columns."""
        v = values.detach().float()
        order = [a for a in (self.facet, self.row, self.col) if a is not None]
        v = v.permute(*order)
        if self.col is None:
            v = v.unsqueeze(-1)
        if self.facet is None:
            v = v.unsqueeze(0)
        return v

    def index(self, facet: int, row: int, col: int) -> tuple[int, ...]:
        """The Result index of a grid cell."""
        index = [0] * len(self.axes)
        for axis, i in ((self.facet, facet), (self.row, row), (self.col, col)):
            if axis is not None:
                index[axis] = int(i)
        return tuple(index)


def meaning(result: Result) -> str:
    """One line saying what a cell's value is, from the spec: `p(" Paris") with block_output
    restored at this cell`."""
    spec = result.spec
    done = {
        "restore": "restored",
        "patch": "patched",
        "add": "added to",
        "zero": "zeroed",
        "subtract": "subtracted from",
        "mean": "mean-ablated",
    }
    swept = [i for i in spec.interventions if i.verb in done]
    what = result.metric or "value"
    if not swept:
        return what
    i = swept[0]
    return f"{what} with {i.component} {done[i.verb]} at this cell"


def cell_detail(result: Result, index: tuple[int, ...], k: int = TOP_K) -> dict:
    """Re-run one cell of a sweep (all its noise samples) and return its top-k next tokens
    and metric, next to the clean and corrupted runs'."""
    if result.rerun is None:
        raise ValueError("this Result keeps no plan to re-run (made by hand, or loaded)")
    started = time.perf_counter()
    ran = result.rerun(index)
    out, example, tokenizer = ran.logits, ran.example, ran.tokenizer
    metric = float(out.metric.mean())
    clean = _at(result.clean, example)
    corrupted = _at(result.corrupted, example)
    if result.metric and result.metric.endswith(" normalized"):
        metric = (metric - corrupted) / (clean - corrupted)
    return {
        "index": list(index),
        "seconds": round(time.perf_counter() - started, 3),
        "patched": {"metric": metric, "top": _top(out.patched, tokenizer, k)},
        "clean": None
        if out.clean is None
        else {"metric": clean, "top": _top(out.clean, tokenizer, k)},
        "corrupted": {"metric": corrupted, "top": _top(out.corrupted, tokenizer, k)},
    }


def _at(values: torch.Tensor | None, example: int) -> float | None:
    if values is None:
        return None
    values = values.reshape(-1)
    return float(values[example if len(values) > 1 else 0])


def _top(logits: torch.Tensor, tokenizer, k: int) -> list[dict]:
    """The k likeliest next tokens, probabilities averaged over the rows (noise samples)."""
    probs = torch.softmax(logits.float(), dim=-1).mean(dim=0)
    p, ids = probs.topk(min(k, probs.shape[-1]))
    return [
        {"token": tokenizer.decode([i]) if tokenizer is not None else f"#{i}", "id": i, "p": q}
        for i, q in zip(ids.tolist(), p.tolist(), strict=True)
    ]
