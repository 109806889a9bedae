"""`Result`: a labelled tensor (named axes with token labels) and the spec that made it."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import torch

from nbvene.spec import Spec, format_spec


class Axis(str):
    """An axis name that also carries its labels: `res.axes == ("layer", "pos")` holds.

    A `pos` axis labels its cells with token texts, and `positions` holds the token positions
    (in the first example)."""

    labels: tuple
    positions: tuple | None

    def __new__(cls, name: str, labels=(), positions=None):
        axis = super().__new__(cls, name)
        axis.labels = tuple(labels)
        axis.positions = None if positions is None else tuple(positions)
        return axis


@dataclass
class Result:
    """What `nv.run` returns.

    `values` has one dimension per axis in `axes` (for `collect:`, then the unit's own
    dimensions); `clean` and `corrupted` are the metric's baselines per example.
    """

    values: torch.Tensor
    axes: tuple[Axis, ...]
    spec: Spec
    metric: str | None = None
    clean: torch.Tensor | None = None
    corrupted: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, tuple]:
        return {str(a): a.labels for a in self.axes}

    @property
    def spec_text(self) -> str:
        return self.spec.text.strip() or format_spec(self.spec)

    def to_pandas(self):
        """A tidy frame: one row per cell, one column per axis (+ `token` for positions),
        and `value`."""
        import pandas as pd

        if self.values.dim() != len(self.axes):
            raise ValueError(
                "to_pandas() needs one value per cell; collected activations have "
                f"shape {tuple(self.values.shape)}: use .values"
            )
        grids = (
            torch.meshgrid(*[torch.arange(len(a.labels)) for a in self.axes], indexing="ij")
            if self.axes
            else []
        )
        columns = {}
        for axis, index in zip(self.axes, grids, strict=True):
            flat = index.reshape(-1).tolist()
            if axis == "pos":
                columns["pos"] = [axis.positions[i] for i in flat] if axis.positions else flat
                columns["token"] = [axis.labels[i] for i in flat]
            else:
                columns[str(axis)] = [axis.labels[i] for i in flat]
        columns["value"] = self.values.reshape(-1).tolist()
        return pd.DataFrame(columns)

    # --- looking at it ------------------------------------------------------------------

    def __repr__(self) -> str:
        shape = " × ".join(f"{a} {len(a.labels)}" for a in self.axes) or "scalar"
        head = f"Result({self.metric or 'collect'}: {shape})"
        if self.values.dim() != len(self.axes):
            unit = " × ".join(map(str, self.values.shape[len(self.axes) :]))
            return f"{head[:-1]}, units of {unit})"
        if self.values.dim() > 3:
            return head
        if self.values.dim() == 3:  # one heatmap per panel / example
            outer = self.axes[0]
            parts = [
                f"{outer}={label}\n" + text_heatmap(self.slice(i))
                for i, label in enumerate(outer.labels)
            ]
            return head + "\n" + "\n".join(parts)
        return head + "\n" + text_heatmap(self)

    def slice(self, index: int) -> Result:
        """The result at one index of its first axis (one panel, one example)."""
        return Result(
            self.values[index], self.axes[1:], self.spec, self.metric,
            self.clean, self.corrupted, self.meta,
        )  # fmt: skip

    def _repr_html_(self) -> str:
        if self.values.dim() == len(self.axes) <= 2:
            return html_heatmap(self)
        if self.values.dim() == len(self.axes) == 3:
            outer = self.axes[0]
            return "".join(
                f"<div><b>{html.escape(f'{outer}={label}')}</b>{html_heatmap(self.slice(i))}</div>"
                for i, label in enumerate(outer.labels)
            )
        return f"<pre>{html.escape(repr(self))}</pre>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """What a notebook shows: the HTML heatmap and the text one (widgets add their view)."""
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def save_html(self, path) -> None:
        """A self-contained HTML page of the heatmap (no scripts, works offline)."""
        page = f"<!doctype html><meta charset='utf-8'><title>nbvene</title>{html_heatmap(self)}"
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)


_SHADES = " ░▒▓█"


def _grid(res: Result) -> tuple[torch.Tensor, list[str], list[str]]:
    """The values as rows × columns with labels: positions down the side, other axes across."""
    v, axes = res.values.float(), list(res.axes)
    if v.dim() == 0:
        return v.reshape(1, 1), [res.metric or "value"], ["value"]
    if v.dim() == 1:
        return v.reshape(-1, 1), [_label(axes[0], i) for i in range(len(v))], ["value"]
    if axes[1] == "pos":
        v, axes = v.T, axes[::-1]
    rows = [_label(axes[0], i) for i in range(v.shape[0])]
    return v, rows, [_label(axes[1], j) for j in range(v.shape[1])]


def _label(axis: Axis, i: int) -> str:
    if axis == "pos":
        return f"{i:>2} {axis.labels[i]!r}"
    return f"{axis}={axis.labels[i]}"


def text_heatmap(res: Result) -> str:
    """Shaded blocks with the numbers: tokens down the side, layers (or heads) across."""
    v, row_labels, col_labels = _grid(res)
    finite = v[torch.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    width = max(len(r) for r in row_labels)
    lines = []
    if v.shape[1] > 1:
        lines.append(" " * width + "  " + f"{col_labels[0]} … {col_labels[-1]}")
    for label, row in zip(row_labels, v, strict=True):
        cells = "".join(_shade(float(x), lo, hi) for x in row)
        peak = row[torch.isfinite(row)]
        tail = (
            f"  max {float(peak.max()):.3g}"
            if len(peak) and v.shape[1] > 1
            else (f"  {float(row[0]):.4g}" if v.shape[1] == 1 else "")
        )
        lines.append(f"{label:<{width}}  {cells}{tail}")
    lines.append(f"scale: '{_SHADES[1]}' {lo:.3g} … '{_SHADES[-1]}' {hi:.3g}")
    return "\n".join(lines)


def _shade(x: float, lo: float, hi: float) -> str:
    if math.isnan(x):
        return "·"
    t = 0.0 if hi == lo else (x - lo) / (hi - lo)
    return _SHADES[min(len(_SHADES) - 1, int(t * (len(_SHADES) - 1) + 0.5))]


def html_heatmap(res: Result) -> str:
    """An HTML table coloured by value (a static view; the widgets issue adds the live one)."""
    v, row_labels, col_labels = _grid(res)
    finite = v[torch.isfinite(v)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    cells = []
    for label, row in zip(row_labels, v, strict=True):
        tds = "".join(
            f"<td title='{html.escape(f'{float(x):.4g}')}' "
            f"style='background:{_colour(float(x), lo, hi)};width:14px;height:14px'></td>"
            for x in row
        )
        cells.append(f"<tr><th style='text-align:left'>{html.escape(label)}</th>{tds}</tr>")
    caption = html.escape(res.metric or "collect")
    head = "".join(f"<th style='font-size:8px'>{html.escape(c)}</th>" for c in col_labels)
    return (
        f"<table style='border-collapse:collapse;font-family:monospace'>"
        f"<caption>{caption} — min {lo:.3g}, max {hi:.3g}</caption>"
        f"<tr><th></th>{head}</tr>{''.join(cells)}</table>"
    )


def _colour(x: float, lo: float, hi: float) -> str:
    if math.isnan(x):
        return "#eee"
    t = 0.0 if hi == lo else (x - lo) / (hi - lo)
    # white → dark blue, readable for colour-blind viewers
    r, g, b = (int(255 - t * (255 - c)) for c in (8, 48, 107))
    return f"rgb({r},{g},{b})"
