"""What a figure of a Result shows: which axes are rows, columns and facets, and what each cell
means. The SVG and the Altair renderers both draw a `View`, so they show the same thing."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from nbvene.figures.palette import Centre, Scale, centre, scale
from nbvene.spec import parse

if TYPE_CHECKING:
    from nbvene.results import Axis, Result

WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
"""Whitespace drawn as a visible sign, so " the" and "the" look different in a label."""

GRID_ORDER = ("pos", "layer", "head")
"""Axes that stay inside a facet before any other; panels and examples become facets first."""


def visible(token: str) -> str:
    """A token's text with its whitespace made visible: `visible(" Paris\\n") == "␣Paris↵"`.

    Other control characters (and lone surrogates) become `\\x1b`-style escapes: XML cannot
    hold them even escaped, and an invisible label helps nobody."""
    return "".join(
        WHITESPACE.get(ch, ch if _printable(ch) else f"\\x{ord(ch):02x}") for ch in token
    )


def _printable(ch: str) -> bool:
    code = ord(ch)
    return (
        code >= 0x20
        and not 0x7F <= code <= 0x9F
        and not 0xD800 <= code <= 0xDFFF
        and code not in (0xFFFE, 0xFFFF)
    )


@dataclass(frozen=True)
class Cell:
    """One value of a view: its facet, its place in the facet's grid, and its coordinates
    (axis name → index) in the Result."""

    facet: int
    row: int
    col: int
    value: float
    coords: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class View:
    """A Result laid out for drawing.

    `kind` is "heatmap" (rows × cols per facet), "tokens" (the prompt coloured per position),
    "bars" (one bar per label of a single axis, or one for a scalar) or "text" (anything else:
    collected activations, which have no single value per cell).
    """

    kind: str
    result: Result
    rows: Axis | None
    cols: Axis | None
    facet_axes: tuple[Axis, ...]
    facets: tuple[tuple[int, ...], ...]
    scale: Scale
    centre: Centre
    columns: int

    @property
    def metric(self) -> str:
        return self.result.metric or "value"

    def facet_title(self, facet: int) -> str:
        """ "mlp", "example 1", "example 0 · layer 3": the facet's coordinates."""
        return " · ".join(
            coordinate(axis, i) for axis, i in zip(self.facet_axes, self.facets[facet], strict=True)
        )

    def cells(self) -> list[Cell]:
        """Every value of the view, facet by facet, row by row."""
        values = self.result.values.detach().float()
        names = [str(a) for a in self.result.axes]
        fixed_names = [str(a) for a in self.facet_axes]
        grid = [a for a in (self.rows, self.cols) if a is not None]
        out = []
        for f, fixed in enumerate(self.facets):
            for place in itertools.product(*[range(len(a.labels)) for a in grid]):
                coords = dict(zip(fixed_names, fixed, strict=True))
                coords.update(zip(map(str, grid), place, strict=True))
                index = tuple(coords[n] for n in names)
                row, col = place if len(place) == 2 else (0, *place, 0)[:2]
                out.append(
                    Cell(f, row, col, float(values[index]), tuple((n, coords[n]) for n in names))
                )
        return out

    def describe(self, cell: Cell) -> str:
        """The tooltip of a cell: what was done where, and the exact value with its baselines.

        "restore block_output · layer 3 · pos 4 "␣Tower"\\np(' Paris') = 0.4321 (corrupted 0.01…)"
        """
        axes = {str(a): a for a in self.result.axes}
        where = " · ".join(coordinate(axes[n], i) for n, i in cell.coords)
        action = self.action(dict(cell.coords))
        head = " · ".join(p for p in (action, where) if p)
        value = "no value" if math.isnan(cell.value) else f"{cell.value:.7g}"
        return f"{head}\n{self.metric} = {value}{self.baselines()}"

    def action(self, coords: dict[str, int]) -> str:
        """ "restore mlp_output (window 10)": the swept intervention, in the spec's words; for a
        causal trace, the one of the cell's own panel ("restore block/mlp/attention" for all)."""
        panel = next((a for a in self.result.axes if a == "panel"), None)
        if panel is not None and "panel" not in coords:
            first = swept(self.result)
            return f"{first.verb} {'/'.join(panel.labels)}" if first else ""
        label = panel.labels[coords["panel"]] if panel is not None else None
        return action(self.result, label)

    def baselines(self) -> str:
        """ " (corrupted 0.01, clean 0.81)": the runs the value is compared with; for a
        normalized metric " (corrupted 0 = -9.06, clean 1 = 4.81)", raw values beside."""
        first = "corrupted" if self.result.spec.corrupt is not None else "base"
        pairs = ((first, _mean(self.result.corrupted)), ("clean", _mean(self.result.clean)))
        normalized = self.metric.endswith(" normalized")
        parts = [
            f"{name} {norm} = {value:.4g}" if normalized else f"{name} {value:.4g}"
            for (name, value), norm in zip(pairs, (0, 1), strict=True)
            if value is not None
        ]
        return f" ({', '.join(parts)})" if parts else ""


def swept(result: Result, panel: str | None = None):
    """The intervention a sweep varies (the first that is not `collect:`), or None; for one
    panel of a causal trace, the one in that panel's own spec (`result.meta["specs"]`)."""
    specs = result.meta.get("specs") or {}
    spec = parse(specs[panel]) if panel in specs else result.spec
    return next((i for i in spec.interventions if i.verb != "collect"), None)


def action(result: Result, panel: str | None = None) -> str:
    """ "restore mlp_output (window 10)": what a cell of `result` (of its `panel`) did; "restore
    mlp" for a panel whose own spec the Result does not keep."""
    first = swept(result, panel)
    if first is None:
        return ""
    if panel is not None and panel not in (result.meta.get("specs") or {}):
        return f"{first.verb} {panel}"
    window = f" (window {first.window})" if first.window else ""
    return f"{first.verb} {first.component}{window}"


def title(result: Result) -> str:
    """A figure's title, as in ROME's: the metric, what each cell did, and to what run:
    `p(' Paris') · restore block_output / mlp_output (window 10) / attention_output ·
    corrupted: noise 3σ on "The Eiffel Tower"`."""
    panel = next((a for a in result.axes if a == "panel"), None)
    did = [action(result, str(p)) for p in panel.labels] if panel is not None else [action(result)]
    verb = did[0].split(" ")[0] if did[0] else ""
    done = " / ".join(d.removeprefix(verb + " ") for d in did if d)
    parts = [result.metric or "value", f"{verb} {done}" if done else ""]
    corrupt = result.spec.corrupt
    if corrupt is not None:
        subject = getattr(corrupt.subject, "value", None)
        on = f' on "{subject}"' if isinstance(subject, str) else ""
        sigma = "σ" if corrupt.relative else ""
        parts.append(f"corrupted: noise {corrupt.scale:g}{sigma}{on}")
    return " · ".join(p for p in parts if p)


def subject_positions(result: Result) -> frozenset[int]:
    """The indices on the `pos` axis of the corrupted subject's tokens (marked in figures as
    in ROME's): the shortest run of the first prompt's tokens whose text holds the subject."""
    corrupt = result.spec.corrupt
    subject = getattr(getattr(corrupt, "subject", None), "value", None)
    pos = next((a for a in result.axes if a == "pos"), None)
    tokens = (result.meta.get("tokens") or [None])[0]
    if not isinstance(subject, str) or pos is None or not tokens:
        return frozenset()
    found: range | None = None
    for start in range(len(tokens)):
        text = ""
        for end in range(start, len(tokens)):
            text += str(tokens[end])
            if subject.strip() in text:
                if found is None or end - start < len(found) - 1:
                    found = range(start, end + 1)
                break
    if found is None:
        return frozenset()
    at = pos.positions or range(len(pos.labels))
    return frozenset(i for i, p in enumerate(at) if int(p) in found)


def coordinate(axis: Axis, i: int) -> str:
    """One coordinate in words: `layer 3`, `pos 4 "␣Tower"`, `mlp` (a panel)."""
    if axis == "pos":
        at = axis.positions[i] if axis.positions else i
        return f'pos {at} "{visible(str(axis.labels[i]))}"'
    if axis == "panel":
        return str(axis.labels[i])
    return f"{axis} {axis.labels[i]}"


def attribute(axis: Axis, i: int) -> str:
    """The value of a cell's `data-<axis>` attribute: the token position for `pos`, else the
    label (a layer or head number, a panel name)."""
    if axis == "pos" and axis.positions:
        return str(axis.positions[i])
    return str(axis.labels[i])


def view_of(result: Result) -> View:
    """Lay out `result`: positions down the side and layers or heads across, one facet per
    index of the other axes (panels and examples first); a single position axis becomes a
    token view, any other single axis (or a scalar) a bar chart."""
    axes = list(result.axes)
    common = {"scale": scale(result), "centre": centre(result), "result": result}
    if result.values.dim() != len(axes):
        return View(
            kind="text", rows=None, cols=None, facet_axes=(), facets=((),), columns=1, **common
        )
    if len(axes) <= 1:
        kind = "tokens" if axes and axes[0] == "pos" else "bars"
        rows = axes[0] if axes else None
        return View(
            kind=kind, rows=None, cols=rows, facet_axes=(), facets=((),), columns=1, **common
        )
    grid = _grid_axes(axes)
    facet_axes = tuple(a for a in axes if a not in grid)
    rows, cols = grid
    facets = tuple(itertools.product(*[range(len(a.labels)) for a in facet_axes]))
    inner = len(facet_axes[-1].labels) if facet_axes else 1
    columns = min(len(facets), inner if inner <= 6 else 4)
    return View(
        kind="heatmap",
        rows=rows,
        cols=cols,
        facet_axes=facet_axes,
        facets=facets,
        columns=columns,
        **common,
    )


def _grid_axes(axes: list[Axis]) -> tuple[Axis, Axis]:
    """The two axes inside a facet, as (rows, cols): positions, layers and heads before the
    others (panels, examples), and positions as rows, where their token labels read best."""
    ranked = sorted(axes, key=lambda a: GRID_ORDER.index(a) if a in GRID_ORDER else len(GRID_ORDER))
    first, second = (a for a in axes if a in ranked[:2])  # in the result's order
    return (second, first) if second == "pos" else (first, second)


def _mean(values: torch.Tensor | None) -> float | None:
    if values is None:
        return None
    finite = [v for v in values.detach().float().reshape(-1).tolist() if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None
