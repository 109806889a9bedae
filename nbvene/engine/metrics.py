"""Metrics reduced on the device: one value per row from its next-token logits."""

from __future__ import annotations

import torch

from nbvene.bind.plan import MetricPlan


def metric_values(
    metric: MetricPlan, logits: torch.Tensor, reference: torch.Tensor | None
) -> torch.Tensor:
    """(rows,) values of `metric` from (rows, vocab) logits; `reference` is the clean run's."""
    logits = logits.float()
    ids = metric.token_ids
    if metric.name == "p":
        return logits.softmax(-1)[:, ids[0]]
    if metric.name == "logprob":
        return logits.log_softmax(-1)[:, ids[0]]
    if metric.name == "logit":
        return logits[:, ids[0]]
    if metric.name == "logit_diff":
        return logits[:, ids[0]] - logits[:, ids[1]]
    if metric.name == "kl":
        clean = reference.float().log_softmax(-1)
        run = logits.log_softmax(-1)
        return (clean.exp() * (clean - run)).sum(-1)
    raise ValueError(f"unknown metric {metric.name!r}")  # the parser only lets known ones through
