"""Metrics reduced on the device: one value per row from its next-token logits, computed in
float32 by the metric's entry in `nbvene.spec.metrics`."""

from __future__ import annotations

import torch

from nbvene.bind.plan import MetricPlan
from nbvene.spec.metrics import lookup


def metric_values(
    metric: MetricPlan, logits: torch.Tensor, reference: torch.Tensor | None
) -> torch.Tensor:
    """(rows,) values of `metric` from (rows, vocab) logits; `reference` is the clean run's."""
    found = lookup(metric.name)
    if found is None:  # the parser only lets registered ones through
        raise ValueError(f"unknown metric {metric.name!r}")
    clean = reference.float() if found.needs_clean else None
    return found.compute(logits.float(), metric.token_ids, clean)
