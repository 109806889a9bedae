"""Edge attribution patching: every edge's effect on a metric, estimated from one forward and
one backward pass per batch, as gradient × activation difference (EAP), or with the gradient
integrated along the straight line from the corrupted to the clean input (EAP-IG)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nbvene.circuits.edges import Layout, layout_of
from nbvene.circuits.forward import (
    PASS_ROWS,
    EdgeRun,
    Inputs,
    check_pair,
    per_variant,
    positions,
    read_logits,
    sender_outputs,
)
from nbvene.errors import NbveneError

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
    if method not in METHODS:
        raise NbveneError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if method == "eap-ig" and steps < 1:
        raise NbveneError(f"eap-ig needs steps >= 1, not {steps}")
    layout = layout_of(model)
    clean, corrupted = check_pair(clean, corrupted)
    clean_out = sender_outputs(model, layout, clean)
    corrupt_out = sender_outputs(model, layout, corrupted)
    if method == "eap":
        grads = receiver_gradients(model, layout, clean, metric, [None])
    else:
        start, end = corrupt_out[0], clean_out[0]  # the embedding is sender 0
        alphas = torch.arange(1, steps + 1, dtype=start.dtype, device=start.device) / steps
        embeds = [start + alpha * (end - start) for alpha in alphas]
        grads = receiver_gradients(model, layout, clean, metric, embeds)
    delta = (corrupt_out - clean_out).float()
    matrix = torch.einsum("sbtd,rbtd->rs", delta, grads.float())
    return matrix[positions(layout, layout.edges)].float().cpu()


def receiver_gradients(
    model: nn.Module,
    layout: Layout,
    clean: Inputs,
    metric: Callable[[torch.Tensor], torch.Tensor],
    embeds: list[torch.Tensor | None],
) -> torch.Tensor:
    """The gradient of the batch-mean metric with respect to every receiver's input, [R, B, T,
    d], averaged over `embeds` (embeddings to run from; None: the clean ones), several per
    forward pass (at most PASS_ROWS rows)."""
    per_pass = max(1, PASS_ROWS // clean.rows)
    total = None
    for start in range(0, len(embeds), per_pass):
        chunk = embeds[start : start + per_pass]
        embed = None if chunk[0] is None else torch.cat(chunk)
        run = EdgeRun(model, layout, probe=True, embed=embed)
        with torch.enable_grad():
            logits = read_logits(model, clean, run, variants=len(chunk))
            values = per_variant(metric, logits, clean.rows)
            loss = values.mean(dim=1).sum() / len(embeds)
            grads = torch.autograd.grad(loss, run.probes)
        grads = torch.cat(grads).unflatten(1, (len(chunk), -1)).sum(dim=1)
        total = grads if total is None else total + grads
    return total
