"""Edge attribution patching: every edge's effect on a metric, estimated from one forward and
one backward pass per batch, as gradient × activation difference (EAP), or with the gradient
integrated along the straight line from the corrupted to the clean input (EAP-IG)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nbvene.circuits.forward import Inputs

METHODS = ("eap", "eap-ig")


def edge_scores(
    model: nn.Module,
    clean: Inputs,
    corrupted: Inputs,
    metric: Callable[[torch.Tensor], torch.Tensor],
    *,
    method: str = "eap",
    steps: int = 5,
) -> torch.Tensor:
    """The score of every edge of `graph_of(model)` (float32, aligned with it): the estimated
    change of the batch-mean metric when that edge alone is patched from the corrupted run,
    (out_s^corrupt − out_s^clean) · ∂metric/∂input_r summed over positions.

    `metric(logits)` maps the logits at each row's read position, [B, vocab], to the metric
    per row, [B]. `method="eap-ig"` averages the gradient over `steps` points between the
    corrupted (excluded) and the clean (included) input embeddings."""
    raise NotImplementedError
