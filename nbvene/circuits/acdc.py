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
from nbvene.circuits.forward import (
    Inputs,
    check_pair,
    patched_metric,
    positions,
    reference_outputs,
    valid,
)
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
    the model left out counts as removed from the start; repeats are dropped): the metric's
    change when it was last tried for removal, m(circuit without it) − m(circuit).
    `progress(done, total)` is called after each receiver.

    Cost: about two forward passes (of copies of the batch) per receiver with candidates;
    on a real model, prune a ranked list first (`edges=` the top edges by EAP)."""
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not tau >= 0:
        raise NbveneError(f"tau must be a number >= 0, not {tau!r}")
    layout = layout_of(model)
    clean, corrupted = check_pair(clean, corrupted)
    reference = reference_outputs(model, layout, clean, corrupted, ablation)
    candidates = list(layout.edges) if edges is None else list(dict.fromkeys(edges))
    r_of, s_of = (t.tolist() for t in positions(layout, candidates))

    def measure(masks: list[torch.Tensor]) -> list[float]:
        stacked = torch.stack(masks)
        return patched_metric(model, layout, clean, reference, metric, stacked).tolist()

    every = valid(layout)
    m_full, m_none = measure([torch.zeros_like(every), every])
    normalized(m_full, m_full, m_none)  # NbveneError when the metric cannot tell them apart
    span = abs(m_full - m_none)
    current = every.clone()  # True: removed
    current[r_of, s_of] = False
    m_current = measure([current])[0]
    scores = torch.zeros(len(candidates), dtype=torch.float32)
    incoming: dict[int, list[int]] = {}
    for i in sorted(range(len(candidates)), key=lambda i: -s_of[i]):  # later senders first
        incoming.setdefault(r_of[i], []).append(i)

    def without(mask: torch.Tensor, chosen: list[int]) -> torch.Tensor:
        mask = mask.clone()
        mask[[r_of[i] for i in chosen], [s_of[i] for i in chosen]] = True
        return mask

    receivers = range(len(layout.receivers) - 1, -1, -1)
    for done, receiver in enumerate(receivers, 1):
        remaining = incoming.get(receiver, [])
        while remaining:
            values = measure([without(current, [i]) for i in remaining])
            changes = [value - m_current for value in values]
            for i, change in zip(remaining, changes, strict=True):
                scores[i] = change
            passing = sorted(
                (abs(c) / span, i)
                for i, c in zip(remaining, changes, strict=True)
                if abs(c) / span < tau
            )
            if not passing:
                break
            order = [i for _, i in passing]
            values = measure([without(current, order[: n + 1]) for n in range(len(order))])
            taken, before = 0, m_current
            for i, value in zip(order, values, strict=True):
                scores[i] = value - before  # its removal's change, from the circuit it left
                if abs(value - before) / span >= tau:
                    break
                taken, before = taken + 1, value
            if taken == 0:
                break
            current = without(current, order[:taken])
            m_current = values[taken - 1]
            remaining = order[taken + 1 :]
        if progress is not None:
            progress(done, len(layout.receivers))
    return [edge for i, edge in enumerate(candidates) if not current[r_of[i], s_of[i]]], scores
