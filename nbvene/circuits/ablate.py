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

from nbvene.circuits.forward import Inputs
from nbvene.circuits.graph import Edge

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
    raise NotImplementedError


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
    raise NotImplementedError


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
    per forward pass (their copies of the batch stacked)."""
    raise NotImplementedError
