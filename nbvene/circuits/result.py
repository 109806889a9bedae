"""`Circuit`: what circuit discovery returns — every scored edge, the edges kept, and how
faithful the kept circuit is (the metric with everything else ablated, over the full model's)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nbvene.circuits.graph import KINDS, PORTS, Edge, Node
from nbvene.errors import NbveneError
from nbvene.figures import svg_image

FORMAT = "nbvene.circuit"
VERSION = 1
SCORE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
"""How a saved Circuit's scores are typed (other dtypes are saved as float32)."""


@dataclass
class Circuit:
    """The scored edges of a model for one behaviour and the circuit kept from them.

    * `edges`: every edge scored, in topological order (senders before receivers);
      `scores[i]` is the score of `edges[i]` (the metric's estimated change when that edge
      alone is patched from the corrupted run; larger magnitude matters more).
    * `kept`: the circuit, a subset of `edges`.
    * `faithfulness`: metric(circuit) / metric(full model), each measured from the corrupted
      run's metric (so 1 means the circuit alone recovers the whole behaviour and 0 none of it).
    * `curve`: (number of edges kept, faithfulness) for a range of sizes, measured during
      discovery by ablation, so a slider over sizes answers without running the model.
    * `method`: "eap", "eap-ig" or "acdc"; `metric`: the metric's text; `spec`: the spec text
      that re-runs the discovery (empty when made by hand); `meta`: model name, layers, heads,
      prompts and anything else a figure or report needs.
    """

    edges: list[Edge]
    scores: torch.Tensor
    kept: list[Edge]
    faithfulness: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    method: str = "eap"
    metric: str = ""
    spec: str = ""
    meta: dict = field(default_factory=dict)

    # --- reading ---------------------------------------------------------------------------

    def order(self) -> list[int]:
        """Edge indices from the largest |score| down; ties keep the edges' topological
        order, so `top(k)`, the frame's ranks and the widget's slider agree."""
        magnitude = self.scores.detach().float().abs().cpu().tolist()
        return sorted(range(len(self.edges)), key=lambda i: (-_finite(magnitude[i]), i))

    def to_pandas(self):
        """One row per scored edge, in topological order: `sender`, `receiver` (node names),
        `port` (q, k, v or in), `edge` (its name), `score`, `rank` (1 = largest |score|) and
        `kept` (whether the circuit keeps it).

        >>> circ.to_pandas().sort_values("rank").head()
        """
        import pandas as pd

        rank = [0] * len(self.edges)
        for r, i in enumerate(self.order(), start=1):
            rank[i] = r
        kept = set(self.kept)
        return pd.DataFrame(
            {
                "sender": [e.sender.name for e in self.edges],
                "receiver": [e.receiver.name for e in self.edges],
                "port": [e.port for e in self.edges],
                "edge": [e.name for e in self.edges],
                "score": self.scores.detach().float().cpu().tolist(),
                "rank": rank,
                "kept": [e in kept for e in self.edges],
            }
        )

    def __repr__(self) -> str:
        """One paragraph: method, metric, edges kept of the total, faithfulness (or why it is
        not known at this size), the model, and the strongest kept edges."""
        head = f"Circuit by {self.method}"
        if self.metric:
            head += f" on {self.metric}"
        model = self.meta.get("model")
        if model:
            head += f" ({model})"
        parts = [f"{head}: {len(self.kept):,} of {len(self.edges):,} edges kept", self._faith()]
        scores = self.scores.detach().float().cpu().tolist()
        kept = set(self.kept)
        strongest = [i for i in self.order() if self.edges[i] in kept][:3]
        if strongest:
            shown = ", ".join(f"{self.edges[i].name} ({scores[i]:+.3g})" for i in strongest)
            parts.append(f"strongest: {shown}")
        return "; ".join(parts) + "."

    def _faith(self) -> str:
        if math.isfinite(self.faithfulness):
            return f"faithfulness {self.faithfulness:.3g}"
        measured = ", ".join(str(n) for n, _ in self.curve[:8])
        if not measured:
            return "faithfulness not measured"
        more = ", …" if len(self.curve) > 8 else ""
        return (
            f"faithfulness not measured at {len(self.kept)} edges "
            f"(measured at {measured}{more} edges: use .at(n))"
        )

    @property
    def nodes(self) -> dict[Node, float]:
        """Each component's score: the sum of |score| over the edges it sends (how much of
        the behaviour flows out of it, whatever the sign); the logits, which send nothing,
        get the sum over the edges they receive. Ordered as the graph (embedding first).

        >>> max(circ.nodes.items(), key=lambda kv: kv[1])
        """
        totals: dict[Node, float] = {}
        for edge, score in zip(
            self.edges, self.scores.detach().float().cpu().tolist(), strict=True
        ):
            magnitude = abs(_finite(score))
            totals[edge.sender] = totals.get(edge.sender, 0.0) + magnitude
            totals.setdefault(edge.receiver, 0.0)
            if edge.receiver.kind == "logits":
                totals[edge.receiver] += magnitude
        return dict(sorted(totals.items()))

    # --- smaller circuits -----------------------------------------------------------------------

    def top(self, k: int) -> Circuit:
        """The circuit of the `k` edges with the largest |score|. Its faithfulness comes from
        `curve` when that size was measured during discovery, else it is NaN (the repr says
        which sizes were measured; `at(n)` picks the nearest one).

        >>> circ.top(50).faithfulness
        """
        if not 0 <= k <= len(self.edges):
            raise NbveneError(
                f"top({k}): a circuit keeps between 0 and {len(self.edges)} edges",
                hint=f"this one scored {len(self.edges)} edges",
            )
        chosen = sorted(self.order()[:k])
        kept = [self.edges[i] for i in chosen]
        faithfulness = dict(self.curve).get(k, math.nan)
        if set(kept) == set(self.kept) and math.isfinite(self.faithfulness):
            faithfulness = self.faithfulness
        return replace(
            self,
            kept=kept,
            faithfulness=float(faithfulness),
            curve=list(self.curve),
            meta=dict(self.meta),
        )

    def at(self, size: int) -> Circuit:
        """The top-k circuit at the measured size nearest to `size` (the smaller on a tie), so
        its faithfulness is always known: what the widget's slider shows."""
        if not self.curve:
            raise NbveneError(
                "this circuit has no faithfulness curve (sizes measured during discovery)",
                hint="use .top(k), whose faithfulness is then NaN",
            )
        nearest = min((n for n, _ in self.curve), key=lambda n: (abs(n - size), n))
        return self.top(nearest)

    # --- files ----------------------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write the circuit as JSON (nodes, edges, scores, kept, curve, spec, meta), whole or
        not at all. `meta` must hold JSON values (tuples come back as lists); NaN is saved as
        null.

        >>> circ.save("ioi.circuit.json"); nv.circuits.Circuit.load("ioi.circuit.json")
        """
        from nbvene.files import write_bytes

        nodes = sorted({n for e in self.edges for n in (e.sender, e.receiver)})
        index = {n: i for i, n in enumerate(nodes)}
        where = {e: i for i, e in enumerate(self.edges)}
        dtype = next((k for k, v in SCORE_DTYPES.items() if v == self.scores.dtype), "float32")
        document = {
            "format": FORMAT,
            "version": VERSION,
            "nodes": [[n.layer, n.kind, n.head] for n in nodes],
            "edges": [[index[e.sender], index[e.receiver], e.port] for e in self.edges],
            "dtype": dtype,
            "scores": [_json_float(v) for v in self.scores.detach().cpu().double().tolist()],
            "kept": [where[e] for e in self.kept],
            "faithfulness": _json_float(self.faithfulness),
            "curve": [[int(n), _json_float(f)] for n, f in self.curve],
            "method": self.method,
            "metric": self.metric,
            "spec": self.spec,
            "meta": self.meta,
        }
        try:
            text = json.dumps(document, allow_nan=False, indent=1)
        except (TypeError, ValueError) as err:
            raise NbveneError(
                f"this circuit's meta cannot be saved as JSON: {err}",
                hint="keep only strings, numbers, lists and dicts in .meta",
            ) from None
        return write_bytes(Path(path), text.encode("utf-8"))

    @classmethod
    def load(cls, path) -> Circuit:
        """A circuit saved by `save`, every field checked before it is used."""
        from nbvene.files import bad, file_at, read_json

        path = file_at(Path(path), "a saved Circuit")
        doc = read_json(path, "a saved Circuit")
        if doc.get("format") != FORMAT or doc.get("version") != VERSION:
            raise bad(path, f"is not a saved Circuit ({FORMAT} version {VERSION})")
        try:
            nodes = [_node(*item) for item in doc["nodes"]]
            edges = [Edge(nodes[s], nodes[r], port) for s, r, port in doc["edges"]]
            bad_port = next((e for e in edges if e.port not in PORTS), None)
            if bad_port is not None:
                raise ValueError(f"edge port {bad_port.port!r} is not one of {PORTS}")
            scores = torch.tensor(
                [math.nan if v is None else float(v) for v in doc["scores"]],
                dtype=SCORE_DTYPES[doc["dtype"]],
            )
            if len(scores) != len(edges):
                raise ValueError(f"{len(scores)} scores for {len(edges)} edges")
            kept = [edges[i] for i in doc["kept"]]
            curve = [(int(n), _float(f)) for n, f in doc["curve"]]
            texts = [doc[k] for k in ("method", "metric", "spec")]
            if not all(isinstance(t, str) for t in texts) or not isinstance(doc["meta"], dict):
                raise ValueError("method, metric and spec must be text and meta an object")
            return cls(edges, scores, kept, _float(doc["faithfulness"]), curve, *texts, doc["meta"])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise bad(path, f"is not a valid saved Circuit: {err}") from None

    # --- display --------------------------------------------------------------------------------

    def to_svg(self) -> str:
        """The static graph as an SVG document (see `nbvene.circuits.svg`)."""
        from nbvene.circuits.svg import svg

        return svg(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict | tuple[dict, dict]:
        """What a notebook shows: the summary as text, the static figure (`static_display`),
        and in a kernel with anywidget the live graph widget's view. Returns `(data, metadata)`
        when the widget brings metadata (Colab's widget manager), else the data alone."""
        data = {"text/plain": repr(self), **static_display(self)}
        try:
            from nbvene.circuits.widget import mimebundle
        except ImportError:  # anywidget is not installed
            return data
        widget, metadata = mimebundle(self)
        data.update(widget)
        return (data, metadata) if metadata else data


def static_display(circuit: Circuit) -> dict:
    """The static part of a Circuit's display, for viewers without widgets (GitHub, nbviewer,
    an untrusted or reopened notebook): the graph's SVG as an `<img>`, the form a Result's
    display stores (`nbvene.figures.svg_image`), once."""
    return {"text/html": svg_image(circuit.to_svg(), f"circuit by {circuit.method}")}


def _finite(v: float) -> float:
    return v if math.isfinite(v) else 0.0


def _json_float(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _float(v) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{v!r} is not a number")
    return float(v)


def _node(layer, kind, head) -> Node:
    if kind not in KINDS:
        raise ValueError(f"node kind {kind!r} is not one of {KINDS}")
    if not isinstance(layer, int) or not (head is None or isinstance(head, int)):
        raise ValueError(f"node layer and head must be integers, got {layer!r}, {head!r}")
    return Node(layer, kind, head)
