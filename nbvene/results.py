"""`Result`: a labelled tensor (named axes with token labels) and the spec that made it."""

from __future__ import annotations

import math
from collections.abc import Callable
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
    dimensions); `clean` and `corrupted` are the metric's baselines per example. `rerun`, when
    the Result came from a sweep, re-runs one cell (`rerun(index)`, what a heatmap click shows);
    it holds the model weakly, so keeping a Result does not keep the model's memory. `top`, for
    a sweep whose metric reads the output, holds each cell's likeliest next tokens as the sweep
    found them: `{"ids": (*values.shape, k), "probs": (*values.shape, k)}` (noise samples'
    probabilities averaged; id -1 where a cell was not run), so a click needs no re-run;
    `baseline_top` the same for the first example's clean and corrupted runs:
    `{"clean": {"ids": (k,), "probs": (k,)}, "corrupted": {...}}`.
    """

    values: torch.Tensor
    axes: tuple[Axis, ...]
    spec: Spec
    metric: str | None = None
    clean: torch.Tensor | None = None
    corrupted: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    rerun: Callable | None = field(default=None, repr=False, compare=False)
    top: dict | None = field(default=None, repr=False, compare=False)
    baseline_top: dict | None = field(default=None, repr=False, compare=False)

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
            self.values[index],
            self.axes[1:],
            self.spec,
            self.metric,
            self.clean,
            self.corrupted,
            self.meta,
            top=None if self.top is None else {k: v[index] for k, v in self.top.items()},
            # the first example's runs: another example's slice has none kept
            baseline_top=None if self.axes[0] == "example" and index else self.baseline_top,
        )

    def _repr_html_(self) -> str:
        """The static figure: an `<img>` of the SVG (see `nbvene.figures.page.figure_html`)."""
        from nbvene.figures.page import figure_html

        return figure_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict | tuple[dict, dict]:
        """What a notebook shows: the text heatmap, the static figure once (as `text/html`, an
        `<img>` of the SVG, the form every viewer keeps: GitHub, nbviewer, nbconvert, an
        untrusted JupyterLab) and, in a kernel with anywidget, the live widget's view. Returns
        `(data, metadata)` when the widget brings metadata (Colab's widget manager), else the
        data alone."""
        data = {"text/plain": repr(self), "text/html": self._repr_html_()}
        widget, metadata = _widget_view(self)
        data.update(widget)
        return (data, metadata) if metadata else data

    def to_svg(self) -> str:
        """The static figure as an SVG document (see `nbvene.figures.svg`)."""
        from nbvene.figures import svg

        return svg(self)

    def to_altair(self):
        """The same figure as an Altair chart (same palette, centre, facets and tooltips);
        needs `pip install altair`."""
        from nbvene.figures import to_altair

        return to_altair(self)

    def save_html(self, path) -> None:
        """A self-contained HTML page: the figure, the spec and where it ran (no scripts, no
        links, works offline)."""
        from nbvene.figures import page
        from nbvene.files import write_bytes

        write_bytes(path, page(self).encode("utf-8"))

    def save_png(self, path, *, scale: float = 2.0) -> None:
        """The Altair chart as a PNG, rendered offline by vl-convert (`scale` multiplies the
        pixels); needs `pip install altair vl-convert-python`."""
        from nbvene.figures import png
        from nbvene.files import write_bytes

        write_bytes(path, png(self, scale=scale))  # written whole: a failure leaves no file


_live_views: list[Callable[[Result], tuple[dict, dict]]] = []


def add_live_view(view: Callable[[Result], tuple[dict, dict]]) -> None:
    """Add a live view to every Result's display: `view(result) -> (data, metadata)`, empty
    where it cannot show one. The widgets add theirs from the layer above (`nbvene.api`), so
    a Result, plain data, knows nothing of them."""
    _live_views.append(view)


def _widget_view(res: Result) -> tuple[dict, dict]:
    """The live views' part of the display (merged in the order they were added)."""
    data: dict = {}
    metadata: dict = {}
    for view in _live_views:
        more, meta = view(res)
        data.update(more)
        metadata.update(meta)
    return data, metadata


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
