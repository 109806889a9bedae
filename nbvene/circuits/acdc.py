"""ACDC-style pruning: visit receivers in reverse topological order and remove each incoming
edge whose removal moves the metric by less than `tau`, measured on the faithfulness scale
(the metric as a fraction of m(full) − m(none), see `nbvene.circuits.ablate`) from the
circuit as it stands (ACDC's rule, with |Δmetric| in place of the KL divergence)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from nbvene.circuits.forward import Inputs
from nbvene.circuits.graph import Edge


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
    """The kept edges and a score per edge of `edges` (default: `graph_of(model)`; an edge
    left out counts as removed): the metric's change when it was removed (0 for edges never
    tried). `progress(done, total)` is called after each receiver."""
    raise NotImplementedError
