"""The heatmap widget: any 2-D slice of a Result (layers × tokens, layers × heads, heads ×
tokens), one facet per extra axis, coloured like the static figures, filled in live during a
sweep, and a click on a cell shows its top predictions: from the top-k the sweep kept
(`Result.top`), or by re-running that cell in the kernel."""

from __future__ import annotations

import pathlib
import time

import anywidget
import torch
import traitlets

from nbvene.figures.palette import PALETTE, PALETTE_DARK, centre, scale, ticks
from nbvene.figures.view import action, subject_positions, title
from nbvene.results import Result
from nbvene.spec import is_steering
from nbvene.widgets.frontend import esm
from nbvene.widgets.transport import encode

HERE = pathlib.Path(__file__).parent
TOP_K = 5


class Heatmap(anywidget.AnyWidget):
    """A Result as a grid of coloured cells per facet; state in traits, values as bytes.

    >>> hm = Heatmap(res)          # or nbvene.widgets.view(res)
    >>> hm.selected = {"facet": 0, "row": 4, "col": 2, "n": 1}   # what a click sets
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
    meanings = traitlets.List(traitlets.Unicode()).tag(sync=True)  # the same, per facet
    title = traitlets.Unicode("").tag(sync=True)  # metric, what was done, to what run
    subject = traitlets.List(traitlets.Int()).tag(sync=True)  # pos-axis indices, marked
    centre_meaning = traitlets.Unicode("").tag(sync=True)
    stops = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    stops_dark = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    scale = traitlets.List(traitlets.Float()).tag(sync=True)  # lo, centre, hi
    ticks = traitlets.List(traitlets.Float()).tag(sync=True)  # the colour bar's labels
    # {"state": "idle"|"running"|"stopped"|"done", "done": n, "total": n, "eta": seconds}
    progress = traitlets.Dict({"state": "idle"}).tag(sync=True)
    stop = traitlets.Bool(False).tag(sync=True)  # the browser's Stop button sets it
    # whether a Stop click reaches the kernel while the sweep runs (see widgets/kernel.py);
    # if not, the widget says to interrupt the kernel instead
    stoppable = traitlets.Bool(False).tag(sync=True)
    # the browser: {"facet", "row", "col", "n"}, n counting that view's clicks (a re-click
    # of the same cell is a change too)
    selected = traitlets.Dict().tag(sync=True)
    detail = traitlets.Dict().tag(sync=True)  # the kernel's answer to a click

    def __init__(self, result: Result, **kwargs):
        self._layout = Layout.of(result)
        self._shown = None
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
            # a causal trace's panels each did their own thing; other facets (examples) not
            meanings=[
                meaning(result, facet if lay.facet_name == "panel" else "")
                for facet in lay.facet_labels
            ],
            title=title(result),
            subject=sorted(subject_positions(result)),
            stops=[list(s) for s in PALETTE],
            stops_dark=[list(s) for s in PALETTE_DARK],
            **kwargs,
        )
        self.show(result)
        self.observe(self._on_select, "selected")

    def show(self, result: Result) -> None:
        """Draw `result`'s values (a partial result during a sweep: NaN cells stay grey). The
        colour scale only ever widens: the colours of a live fill keep their meaning."""
        self.result = result
        shown = scale(result, within=self._shown) if self._shown else scale(result)
        if any(v == v for v in result.values.reshape(-1).tolist()) or result.corrupted is not None:
            self._shown = shown  # an empty result without baselines fixes nothing yet
        with self.hold_sync():
            self.values = encode(self._layout.grid(result.values))
            self.scale = list(shown)
            self.ticks = ticks(shown)
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


def meaning(result: Result, facet: str = "") -> str:
    """One line saying what a cell's value is, from the spec: `p(" Paris") with block_output
    restored at this cell`; for a causal trace's `facet` ("mlp"), that panel's own component."""
    done = {
        "restore": "restored",
        "patch": "patched",
        "add": "added to",
        "zero": "zeroed",
        "subtract": "subtracted from",
        "mean": "mean-ablated",
    }
    what = result.metric or "value"
    did = action(result, facet or None)
    verb, _, component = did.partition(" ")
    if verb not in done:
        return what
    return f"{what} with {component} {done[verb]} at this cell"


def cell_detail(result: Result, index: tuple[int, ...], k: int = TOP_K) -> dict:
    """One cell's top-k next tokens and metric, next to the clean and corrupted runs'. From the
    top-k the sweep kept (`Result.top`) when it did, without running the model; otherwise by
    re-running the cell (all its noise samples). A normalized metric shows 1 for the clean run
    and 0 for the corrupted one, by definition, with the raw values beside (`raw`)."""
    started = time.perf_counter()
    normalized = (result.metric or "").endswith(" normalized")
    if result.top is not None:
        return _kept_detail(result, index, k, started, normalized)
    if result.rerun is None:
        raise ValueError(why_no_click(result))
    ran = result.rerun(index)
    out, example, tokenizer = ran.logits, ran.example, ran.tokenizer
    raw = float(out.metric.mean())
    clean = _at(result.clean, example)
    corrupted = _at(result.corrupted, example)
    value = (raw - corrupted) / (clean - corrupted) if normalized else raw
    return _answer(
        index,
        started,
        normalized,
        patched=(value, raw, _top(out.patched, tokenizer, k)),
        clean=None if out.clean is None else (clean, _top(out.clean, tokenizer, k)),
        corrupted=(corrupted, _top(out.corrupted, tokenizer, k)),
    )


def _kept_detail(result: Result, index, k: int, started: float, normalized: bool) -> dict:
    """The click's answer from `Result.top` and the Result's own values and baselines."""
    tokenizer = getattr(result.rerun, "tokenizer", None)
    top = _kept_top(result.top["ids"][index], result.top["probs"][index], tokenizer, k)
    example = index[0] if index and result.axes[0] == "example" else 0
    runs = result.baseline_top or {} if example == 0 else {}  # kept for the first example
    baseline = {
        name: _kept_top(run["ids"], run["probs"], tokenizer, k) for name, run in runs.items()
    }
    value = float(result.values[index])
    clean, corrupted = _at(result.clean, example), _at(result.corrupted, example)
    raw = value
    if normalized:
        raw = None if None in (clean, corrupted) else corrupted + value * (clean - corrupted)
    return _answer(
        index,
        started,
        normalized,
        patched=(value, raw, top),
        clean=None if clean is None else (clean, baseline.get("clean", [])),
        corrupted=None if corrupted is None else (corrupted, baseline.get("corrupted", [])),
    )


def _answer(index, started: float, normalized: bool, *, patched, clean, corrupted) -> dict:
    """The click panel's answer: `patched` is (value shown, raw metric, top tokens), `clean`
    and `corrupted` (metric, top tokens) or None where that run was not made. A normalized
    metric shows 1 for the clean run and 0 for the corrupted one, by definition, with the raw
    values beside (`raw`)."""
    value, raw, top = patched
    runs = {
        name: None if run is None else {"metric": run[0], "top": run[1]}
        for name, run in (("patched", (value, top)), ("clean", clean), ("corrupted", corrupted))
    }
    if normalized:
        runs["patched"]["raw"] = raw
        for name, shown in (("clean", 1.0), ("corrupted", 0.0)):
            if runs[name] is not None:
                runs[name] = {**runs[name], "metric": shown, "raw": runs[name]["metric"]}
    return {"index": list(index), "seconds": round(time.perf_counter() - started, 3), **runs}


def _kept_top(ids: torch.Tensor, probs: torch.Tensor, tokenizer, k: int) -> list[dict]:
    """Kept top tokens as the click panel lists them (a cell not run has none)."""
    return [
        {"token": tokenizer.decode([i]) if tokenizer is not None else f"#{i}", "id": i, "p": q}
        for i, q in zip(ids[:k].tolist(), probs[:k].tolist(), strict=True)
        if i >= 0
    ]


def why_no_click(result: Result) -> str:
    """Why a cell of `result` cannot show its predictions, in the user's terms."""
    if is_steering(result.spec):
        return (
            "a steering sweep keeps no run per cell: call nv.generate(...) at that strength, "
            "or use the steering panel, to see its text"
        )
    return "this Result keeps no plan to re-run (made by hand, or loaded)"


def _at(values: torch.Tensor | None, example: int) -> float | None:
    if values is None:
        return None
    values = values.reshape(-1)
    return float(values[example if len(values) > 1 else 0])


def _top(logits: torch.Tensor, tokenizer, k: int) -> list[dict]:
    """The k likeliest next tokens, probabilities averaged over the rows (noise samples)."""
    probs = torch.softmax(logits.float(), dim=-1).mean(dim=0)
    p, ids = probs.topk(min(k, probs.shape[-1]))
    return _kept_top(ids, p, tokenizer, k)
