"""Verify a circuit by ablation: run the model with every edge outside it patched from the
corrupted run (or mean-ablated) and compare the metric with the full model's.

Faithfulness = (m(kept) − m(none)) / (m(full) − m(none)), where m(full) is the clean model's
metric, m(none) the metric with every edge ablated (the corrupted run's metric, or the
mean-ablated model's) and m(kept) the metric with only `kept` left: 1 when the circuit alone
recovers the whole behaviour, 0 when it recovers none of it. Ablating everything but a real
circuit keeps it near 1; ablating the circuit itself (keeping every other edge) drops it
near 0."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from nbvene.circuits.edges import layout_of
from nbvene.circuits.forward import (
    Inputs,
    check_pair,
    patched_metric,
    positions,
    reference_outputs,
    removal,
    valid,
)
from nbvene.circuits.graph import Edge
from nbvene.errors import NbveneError

Metric = Callable[[torch.Tensor], torch.Tensor]


def edge_metric(
    model: nn.Module,
    clean: Inputs,
    corrupted: Inputs,
    metric: Metric,
    kept: Iterable[Edge],
    *,
    ablation: str = "corrupted",
) -> float:
    """The batch-mean metric with every edge outside `kept` ablated ("corrupted": its sender's
    output from the corrupted run; "mean": its mean over the clean batch)."""
    layout, clean, reference = _prepared(model, clean, corrupted, ablation)
    removed = removal(layout, [kept])
    return float(patched_metric(model, layout, clean, reference, metric, removed)[0])


def faithfulness(
    model: nn.Module,
    clean: Inputs,
    corrupted: Inputs,
    metric: Metric,
    kept: Iterable[Edge],
    *,
    ablation: str = "corrupted",
) -> float:
    """(m(kept) − m(none)) / (m(full) − m(none)): see the module docstring."""
    layout, clean, reference = _prepared(model, clean, corrupted, ablation)
    removed = removal(layout, [kept, layout.edges, []])
    m_kept, m_full, m_none = patched_metric(
        model, layout, clean, reference, metric, removed
    ).tolist()
    return normalized(m_kept, m_full, m_none)


def _prepared(model: nn.Module, clean: Inputs, corrupted: Inputs, ablation: str):
    """What every ablated run starts from: the model's graph layout, the checked clean inputs
    and the senders' reference outputs (corrupted, or the clean batch's mean)."""
    layout = layout_of(model)
    clean, corrupted = check_pair(clean, corrupted)
    return layout, clean, reference_outputs(model, layout, clean, corrupted, ablation)


def normalized(value: float, full: float, none: float) -> float:
    """`value` on the faithfulness scale: 0 at m(none), 1 at m(full)."""
    span = full - none
    if abs(span) < 1e-12:
        raise NbveneError(
            "the full model and the fully ablated one give the same metric, so faithfulness "
            "is undefined",
            hint="choose clean and corrupted prompts (or a metric) the model tells apart",
        )
    return (value - none) / span


def curve(
    model: nn.Module,
    clean: Inputs,
    corrupted: Inputs,
    metric: Metric,
    ranked: list[Edge],
    sizes: list[int],
    *,
    ablation: str = "corrupted",
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[int, float]]:
    """Faithfulness of the top-`size` prefix of `ranked` for each of `sizes`, several sizes
    per forward pass (their copies of the batch stacked). `progress(done, total)` is called
    after each forward pass, with the number of sizes done."""
    layout, clean, reference = _prepared(model, clean, corrupted, ablation)
    every = valid(layout)
    ends = torch.stack([torch.zeros_like(every), every])
    m_full, m_none = patched_metric(model, layout, clean, reference, metric, ends).tolist()
    sizes = [int(size) for size in sizes]
    r, s = positions(layout, ranked)
    removed = every.expand(len(sizes), *every.shape).clone()
    for variant, size in enumerate(sizes):
        removed[variant, r[:size], s[:size]] = False
    values = patched_metric(model, layout, clean, reference, metric, removed, progress=progress)
    return [
        (size, normalized(v, m_full, m_none))
        for size, v in zip(sizes, values.tolist(), strict=True)
    ]
