"""The circuit graph widget: every component of the model laid out by layer (`layout`), the
strongest edges drawn weighted and coloured by score, a slider over the number of edges kept
that redraws at once and reads the faithfulness measured at that size from the Circuit's curve
(no kernel round-trip), hover for an edge's name and score, and a click (or Enter) on a
component for the node scores of its layer's heads. Everything the browser needs is sent once,
the arrays as binary buffers."""

from __future__ import annotations

import math
import pathlib
import weakref
from typing import TYPE_CHECKING

import anywidget
import numpy as np
import torch
import traitlets

from nbvene.circuits.graph import KINDS, PORTS
from nbvene.circuits.layout import layout
from nbvene.circuits.svg import edge_scale
from nbvene.figures.palette import PALETTE
from nbvene.widgets import frontend
from nbvene.widgets.display import WIDGET_VIEW, can_display
from nbvene.widgets.transport import encode

if TYPE_CHECKING:
    from nbvene.circuits.result import Circuit

HERE = pathlib.Path(__file__).parent
MAX_DRAWN = 2000
"""At most this many edges are drawn at one slider position (the strongest), so the browser
stays responsive on a large model; the status line says when more are kept."""


def _esm() -> str:
    """shared.js (the palette and array helpers every nbvene widget uses), then graph.js."""
    shared = (frontend.HERE / "shared.js").read_text(encoding="utf-8")
    return shared + "\n" + (HERE / "graph.js").read_text(encoding="utf-8")


class CircuitGraph(anywidget.AnyWidget):
    """A Circuit as a graph; state in traits, arrays as bytes.

    >>> g = CircuitGraph(circ)          # or just `circ` as a cell's last line
    >>> g.size = 50                     # what the slider sets: the 50 strongest edges
    >>> g.selected = 3                  # what a click sets: the index of a node in g.nodes
    """

    _esm = _esm()
    _css = HERE / "graph.css"
    nodes = traitlets.List(traitlets.Unicode()).tag(sync=True)  # names, in graph order
    # per node: layer, kind (index in KINDS), head (-1 if none); int32 N × 3
    node_info = traitlets.Dict().tag(sync=True)
    node_boxes = traitlets.Dict().tag(sync=True)  # per node: x, y, width, height; float32 N × 4
    node_scores = traitlets.Dict().tag(sync=True)  # Circuit.nodes, float32 N
    kinds = traitlets.List(traitlets.Unicode(), list(KINDS)).tag(sync=True)
    ports = traitlets.List(traitlets.Unicode(), list(PORTS)).tag(sync=True)
    edges = traitlets.Dict().tag(sync=True)  # one int32 per edge: see `pack`
    scores = traitlets.Dict().tag(sync=True)  # float32 E
    kept = traitlets.Dict().tag(sync=True)  # the circuit's own edges' indices, int32
    kept_size = traitlets.Int(0).tag(sync=True)
    # the sizes faithfulness was measured at (the slider's stops); [] = every size 1..E
    sizes = traitlets.List(traitlets.Int()).tag(sync=True)
    curve = traitlets.List(traitlets.List()).tag(sync=True)  # [size, faithfulness or None]
    faithfulness = traitlets.Float(None, allow_none=True).tag(sync=True)  # the circuit's own
    size = traitlets.Int(0).tag(sync=True)  # edges drawn now: the slider sets it
    selected = traitlets.Int(-1).tag(sync=True)  # the clicked node's index, -1 for none
    method = traitlets.Unicode("").tag(sync=True)
    metric = traitlets.Unicode("").tag(sync=True)
    width = traitlets.Float(0).tag(sync=True)
    height = traitlets.Float(0).tag(sync=True)
    stops = traitlets.List(traitlets.List(traitlets.Int())).tag(sync=True)
    scale = traitlets.List(traitlets.Float()).tag(sync=True)  # lo, 0, hi
    max_drawn = traitlets.Int(MAX_DRAWN).tag(sync=True)

    def __init__(self, circuit: Circuit, **kwargs):
        node_scores = circuit.nodes
        names = list(node_scores)
        placed, width, height = layout(names)
        index = {n: i for i, n in enumerate(names)}
        where = {e: i for i, e in enumerate(circuit.edges)}
        kept = sorted(where[e] for e in circuit.kept)
        sizes = sorted({n for n, _ in circuit.curve if 0 < n <= len(circuit.edges)})
        if sizes and len(kept) not in sizes:
            sizes = sorted({*sizes, len(kept)})
        info = [[n.layer, KINDS.index(n.kind), -1 if n.head is None else n.head] for n in names]
        boxes = [[placed[n].x, placed[n].y, placed[n].width, placed[n].height] for n in names]
        faith = circuit.faithfulness
        super().__init__(
            nodes=[n.name for n in names],
            node_info=encode(torch.tensor(info).reshape(-1, 3), "int32"),
            node_boxes=encode(torch.tensor(boxes).reshape(-1, 4)),
            node_scores=encode(torch.tensor(list(node_scores.values()))),
            edges=encode(pack(circuit.edges, index), "int32"),
            scores=encode(circuit.scores.detach().float().cpu()),
            kept=encode(np.array(kept, dtype=np.int32), "int32"),
            kept_size=len(kept),
            sizes=sizes,
            curve=[[int(n), f if math.isfinite(f) else None] for n, f in circuit.curve],
            faithfulness=faith if math.isfinite(faith) else None,
            size=len(kept),
            method=circuit.method,
            metric=circuit.metric,
            width=width,
            height=height,
            stops=[list(s) for s in PALETTE],
            scale=list(edge_scale(circuit)),
            **kwargs,
        )


def pack(edges, index) -> np.ndarray:
    """Each edge as one 32-bit word, `sender << 17 | receiver << 2 | port` (node indices below
    2**15, the port's index in PORTS), read back in graph.js with unsigned shifts: a third of
    three int32 per edge, so a GPT-2-sized graph (32k edges) stores in about 260 KB."""
    if len(index) > 2**15:
        raise ValueError(f"the circuit graph draws at most {2**15} components, not {len(index)}")
    words = [index[e.sender] << 17 | index[e.receiver] << 2 | PORTS.index(e.port) for e in edges]
    return np.array(words, dtype=np.uint32).view(np.int32)


_VIEWS: dict[int, weakref.ref] = {}
"""The widget shown for each living Circuit, by its `id`, held weakly (the widget is dropped
with its last view); an entry goes when its Circuit does."""


def view(circuit: Circuit) -> CircuitGraph:
    """The widget for `circuit`, made once and kept beside it (so showing it twice shows one
    graph, one slider)."""
    found = _VIEWS.get(id(circuit))
    widget = found() if found is not None else None
    if widget is None:
        widget = CircuitGraph(circuit)
        if id(circuit) not in _VIEWS:
            weakref.finalize(circuit, _VIEWS.pop, id(circuit), None)
        _VIEWS[id(circuit)] = weakref.ref(widget)
    return widget


def mimebundle(circuit: Circuit) -> tuple[dict, dict]:
    """The widget's part of a Circuit's display, `(data, metadata)`: the widget view entry, and
    on Colab the metadata naming its widget manager; both empty outside a kernel."""
    if not can_display():
        return {}, {}
    found = view(circuit)._repr_mimebundle_()
    data, metadata = found if isinstance(found, tuple) else (found or {}, {})
    return {k: v for k, v in data.items() if k == WIDGET_VIEW}, metadata or {}
