"""What training and evaluation share: the labels of a spec's examples, the objective, and the
measures of a fit (interchange intervention accuracy and mean loss)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from nbvene.bind.plan import Plan
from nbvene.engine.memory import Budget
from nbvene.errors import NbveneError, error_at
from nbvene.train.forward import Forward

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""`loss(outputs, labels)`: a training objective in place of cross-entropy on the labels."""


def objective(outputs: torch.Tensor, labels: torch.Tensor, loss: Loss | None) -> torch.Tensor:
    labels = labels.to(outputs.device)
    if loss is not None:
        return loss(outputs, labels)
    return nn.functional.cross_entropy(outputs.float(), labels)


def measure(
    forward: Forward,
    indices: list[int],
    labels: torch.Tensor,
    loss: Loss | None,
    batch_size: int = 256,
    budget: Budget | None = None,
) -> dict:
    """Interchange intervention accuracy and mean loss over `indices`, without gradients, in
    the budget's chunks (`batch_size` examples a chunk without one)."""
    hits, total, count = 0, 0.0, 0
    classes = not labels.is_floating_point() and labels.dim() == 1
    budget = budget or Budget(batch_size)
    with torch.no_grad():
        for chosen, outputs in budget.chunks(indices, forward, "evaluation"):
            wanted = labels[chosen].to(outputs.device)
            total += float(objective(outputs, wanted, loss)) * len(chosen)
            if classes:
                hits += int((outputs.argmax(-1) == wanted).sum())
            count += len(chosen)
    if count == 0:
        return {"iia": math.nan, "loss": math.nan}
    return {"iia": hits / count if classes else math.nan, "loss": total / count}


def labels_of(plan: Plan, namespace: Mapping, tokenizer, classes: bool) -> torch.Tensor:
    """The label of every base example: class indices or token ids (a tensor, a list of ints,
    or single-token texts), or any tensor with one row per example when `loss=` is given."""
    spec = plan.spec
    line = spec.lines.get("label", 0)
    name = spec.label.name

    def error(message: str, hint: str | None = None) -> NbveneError:
        return error_at(spec, message, line, hint=hint)

    if name not in namespace:
        raise error(f"{{{name}}} is not defined", hint=f"pass namespace={{'{name}': ...}}")
    value = namespace[name]
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        value = [_token(tokenizer, v, error) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * len(plan.base)
    try:
        labels = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise error(
            f"{{{name}}} must be a tensor or a list of labels, got {type(value).__name__}"
        ) from None
    labels = labels.detach().cpu()
    if labels.dim() == 0 or labels.shape[0] != len(plan.base):
        got = "one label" if labels.dim() == 0 else f"{labels.shape[0]} labels"
        raise error(
            f"{{{name}}} has {got} for {len(plan.base)} base examples",
            hint="give one label per base example",
        )
    if classes and (labels.is_floating_point() or labels.dim() != 1):
        raise error(
            f"{{{name}}} must hold class indices or token ids (integers), one per example; "
            f"got {labels.dtype} of shape {tuple(labels.shape)}",
            hint="for other targets, pass loss=lambda outputs, labels: ...",
        )
    return labels.long() if classes else labels


def _token(tokenizer, text: str, error) -> int:
    if tokenizer is None:
        raise error(
            f"the label {text!r} is text, and no tokenizer was given",
            hint="pass tokenizer=..., or give token ids",
        )
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise error(
            f"the label {text!r} is {len(ids)} tokens for this tokenizer",
            hint='a label is one token, often with a leading space: " Paris"',
        )
    return ids[0]
