"""From a bound `discover:` spec to a `Circuit`: the paired prompts as model inputs, the
method's edge scores (EAP, EAP-IG) or pruning (ACDC), the kept edges, their faithfulness by
ablation, and the faithfulness curve over circuit sizes the graph widget's slider shows."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

from nbvene.bind.circuit import Discovery
from nbvene.bind.prompts import Prompt, pad
from nbvene.circuits.ablate import curve
from nbvene.circuits.acdc import acdc
from nbvene.circuits.eap import edge_scores
from nbvene.circuits.edges import graph_of
from nbvene.circuits.forward import Inputs
from nbvene.circuits.graph import Edge
from nbvene.circuits.result import Circuit
from nbvene.errors import NbveneError, error_at
from nbvene.spec import Discover, format_spec

Progress = Callable[[int, int], None]
"""`progress(done, total)`: called as discovery's forward passes finish."""

OPTIONS = {
    "eap": ("top", "threshold"),
    "eap-ig": ("top", "threshold", "steps"),
    "acdc": ("tau",),
    "given": (),
}
"""The options of each method a Circuit's meta records."""

STEPS = (1, 2, 5)
"""The curve's sizes go 1, 2, 5, 10, 20, 50, ... up to every edge."""


def discover(d: Discovery, *, progress: Progress | None = None) -> Circuit:
    """Run a bound `discover:` spec: score the edges (or prune them, or take the given ones),
    keep the circuit, and measure its faithfulness and the curve over sizes. A problem the
    circuit functions find (a family without a graph, a metric the full and the ablated model
    give alike) is placed on the discover: line."""
    try:
        return _discover(d, progress)
    except NbveneError as e:
        raise error_at(d.spec, e, d.spec.discover.line) from None


def _discover(d: Discovery, progress: Progress | None) -> Circuit:
    model = d.model
    edges = graph_of(model)
    clean, corrupted = _inputs(d.clean), _inputs(d.corrupted)
    stages = _Stages(progress)
    started = time.perf_counter()
    if d.method == "acdc":
        kept, scores = acdc(
            model,
            clean,
            corrupted,
            d.metric,
            tau=d.tau,
            edges=edges,
            ablation=d.ablation,
            progress=stages.method,
        )
    elif d.method == "given":
        kept = _named(d, edges)
        chosen = set(kept)
        scores = torch.tensor([1.0 if e in chosen else 0.0 for e in edges])
    else:
        scores = edge_scores(model, clean, corrupted, d.metric, method=d.method, steps=d.steps)
        kept = _kept(edges, scores, d.top, d.threshold)
    stages.step()
    scored = time.perf_counter() - started
    # the kept edges lead the ranking, so the curve at the circuit's size is its faithfulness
    ranked = _ranked(edges, scores, kept)
    sizes = _sizes(len(edges), len(kept), every=d.method != "given")
    with torch.no_grad():
        points = curve(model, clean, corrupted, d.metric, ranked, sizes, ablation=d.ablation)
    stages.step()
    return Circuit(
        edges=edges,
        scores=scores.detach().float().cpu(),
        kept=kept,
        faithfulness=float(dict(points)[len(kept)]),
        curve=[(int(n), float(f)) for n, f in points],
        method=d.method,
        metric=d.metric_text,
        spec=check_spec(d, kept),
        meta=_meta(d, edges, scored, time.perf_counter() - started),
    )


def check_spec(d: Discovery, kept: list[Edge]) -> str:
    """The spec that re-runs the ablation check: the discover spec with its method replaced by
    the kept edges (`discover: circuit of [...]`), run with the same namespace."""
    given = Discover("given", ablation=d.ablation, edges=tuple(e.name for e in kept))
    return format_spec(dataclasses.replace(d.spec, discover=given, text=""))


def _inputs(prompts: tuple[Prompt, ...]) -> Inputs:
    """Prompts as the model's inputs, right-padded, read at each prompt's read position (the
    circuit functions move them to the model's device)."""
    ids, mask = pad(list(prompts), 0, "cpu")
    read = torch.tensor([p.read_at % len(p) for p in prompts])
    return Inputs(ids, mask, read, tuple(_text(p) for p in prompts))


def _kept(edges: list[Edge], scores: torch.Tensor, top: int | None, threshold: float | None):
    """The top-`top` edges by |score|, or those whose |score| is at least `threshold`, in
    topological order."""
    size = scores.abs()
    if threshold is not None:
        chosen = set((size >= threshold).nonzero().flatten().tolist())
    else:
        chosen = set(size.argsort(descending=True, stable=True)[:top].tolist())
    return [e for i, e in enumerate(edges) if i in chosen]


def _ranked(edges: list[Edge], scores: torch.Tensor, kept: list[Edge]) -> list[Edge]:
    """Every edge, the kept ones first, each group by |score| (largest first, ties in graph
    order): the curve's prefixes grow from the circuit."""
    inside = set(kept)
    order = [edges[i] for i in scores.abs().argsort(descending=True, stable=True).tolist()]
    return [e for e in order if e in inside] + [e for e in order if e not in inside]


def _sizes(n: int, kept: int, every: bool = True) -> list[int]:
    """0, the circuit's own size and `n`; and with `every`, 1, 2, 5, 10, 20, 50, ... below `n`
    (a given circuit is only checked, not drawn at other sizes)."""
    sizes = {0, n, kept}
    scale = 1
    while every and scale < n:
        sizes |= {s * scale for s in STEPS if s * scale < n}
        scale *= 10
    return sorted(sizes)


def _named(d: Discovery, edges: list[Edge]) -> list[Edge]:
    """The edges `circuit of [...]` names, each checked to be in the model's graph."""
    by_name = {e.name: e for e in edges}
    missing = [name for name in d.given if name not in by_name]
    if missing:
        raise error_at(
            d.spec,
            f"{missing[0]!r} is not an edge of this model",
            d.spec.discover.line,
            hint=f"its graph has {len(edges)} edges, e.g. {edges[0].name}, {edges[-1].name}",
            token=missing[0].split(" ")[0],
        )
    return [by_name[name] for name in d.given]


def _meta(d: Discovery, edges: list[Edge], scored: float, total: float) -> dict:
    model = d.model
    config = getattr(model, "config", None)
    heads = [e.sender.head for e in edges if e.sender.kind == "head"]
    return {
        "model": getattr(config, "_name_or_path", None) or type(model).__name__,
        "n_layers": edges[-1].receiver.layer,
        "n_heads": max(heads) + 1 if heads else 0,
        "prompts": [_text(p) for p in d.clean],
        "corrupted": [_text(p) for p in d.corrupted],
        "ablation": d.ablation,
        "options": {k: getattr(d, k) for k in OPTIONS[d.method]},
        "seconds": {"scores": round(scored, 3), "total": round(total, 3)},
    }


def _text(prompt: Prompt) -> str:
    return prompt.text if prompt.text is not None else "".join(prompt.tokens)


class _Stages:
    """Progress over discovery's forward passes: the method's (one unit for EAP's scores,
    ACDC's own count of passes), then the curve (one unit)."""

    AFTER = 1

    def __init__(self, progress: Progress | None):
        self.progress, self.passes, self.stages = progress, 1, 0

    def method(self, done: int, total: int) -> None:
        """ACDC's progress(done, total), within the whole."""
        self.passes = total
        self._report(done)

    def step(self) -> None:
        """The method or the curve has finished."""
        self.stages += 1
        self._report(self.passes + self.stages - 1)

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.passes + self.AFTER)
