"""ACDC-style pruning: visit receivers in reverse topological order and remove each incoming
edge whose removal moves the metric by less than `tau`, measured on the faithfulness scale
(the metric as a fraction of m(full) − m(none), see `nbvene.circuits.ablate`) from the
circuit as it stands (ACDC's rule, with |Δmetric| in place of the KL divergence).

Batched: the candidate edges of one receiver are first tried one by one in a single forward
pass (copies of the batch); those within tau are then removed in order of their effect,
smallest first, as long as each removal still moves the metric by less than tau (a second
pass evaluates the cumulative removals); the candidates left over are tried again against
the smaller circuit. So every removal obeys the rule against the circuit it was removed
from, as in sequential ACDC, with two forward passes per receiver in the common case."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from nbvene.circuits.ablate import normalized
from nbvene.circuits.edges import layout_of
from nbvene.circuits.forward import Inputs, check_pair, patched_metric, reference_outputs
from nbvene.circuits.graph import Edge
from nbvene.errors import NbveneError


def acdc(
    model: nn.Module,
    clean: Inputs,
    corrupted: Inputs,
    metric: Callable[[torch.Tensor], torch.Tensor],
    *,
    tau: float,
    edges: Iterable[Edge] | None = None,
    ablation: str = "corrupted",
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Edge], torch.Tensor]:
    """The kept edges and a score per edge of `edges` (default: `graph_of(model)`; an edge of
    the model left out counts as removed from the start): the metric's change when it was
    last tried for removal, m(circuit without it) − m(circuit). `progress(done, total)` is
    called after each receiver."""
    if not tau >= 0:
        raise NbveneError(f"tau must be a number >= 0, not {tau!r}")
    layout = layout_of(model)
    clean, corrupted = check_pair(clean, corrupted)
    reference = reference_outputs(model, layout, clean, corrupted, ablation)
    candidates = list(layout.edges) if edges is None else list(edges)
    index = {edge: i for i, edge in enumerate(candidates)}

    def measure(kept_sets: list[set[Edge]]) -> list[float]:
        return patched_metric(model, layout, clean, reference, metric, kept_sets).tolist()

    m_full, m_none = measure([set(layout.edges), set()])
    normalized(m_full, m_full, m_none)  # NbveneError when the metric cannot tell them apart
    span = abs(m_full - m_none)
    current = set(candidates)
    m_current = measure([current])[0]
    scores = torch.zeros(len(candidates), dtype=torch.float32)
    receivers = list(reversed(layout.receivers))
    incoming: dict[tuple, list[Edge]] = {key: [] for key in receivers}
    for edge in candidates:
        incoming[(edge.receiver, edge.port)].append(edge)
    for done, key in enumerate(receivers, 1):
        remaining = sorted(incoming[key], reverse=True)  # later senders first
        while remaining:
            changes = [v - m_current for v in measure([current - {e} for e in remaining])]
            for edge, change in zip(remaining, changes, strict=True):
                scores[index[edge]] = change
            passing = sorted(
                (abs(c) / span, i) for i, c in enumerate(changes) if abs(c) / span < tau
            )
            if not passing:
                break
            order = [remaining[i] for _, i in passing]
            values = measure([current - set(order[: n + 1]) for n in range(len(order))])
            taken, before = 0, m_current
            for value in values:
                if abs(value - before) / span >= tau:
                    break
                taken, before = taken + 1, value
            if taken == 0:
                break
            for edge, value in zip(order[:taken], [m_current, *values[: taken - 1]], strict=True):
                scores[index[edge]] = values[order.index(edge)] - value
            current -= set(order[:taken])
            m_current = values[taken - 1]
            remaining = order[taken + 1 :]
        if progress is not None:
            progress(done, len(receivers))
    return [edge for edge in candidates if edge in current], scores
