"""Forward passes in chunks that keep activations: every chunk right-padded as the whole batch
would be, the units kept per site joined back into one batch, and the LM head cut to one
position (these passes are for activations, not logits)."""

from __future__ import annotations

import torch
from torch import nn

from nbvene.bind.prompts import Prompt, pad
from nbvene.engine.edits import store_edit
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.sites import Site


def kept_units(model: nn.Module, prompts: list[Prompt], sites, call, device, budget: Budget,
               what: str, pad_id: int = 0, *, grad: bool = False, keep: list[Hooks] | None = None
               ) -> dict[Site, torch.Tensor]:  # fmt: skip
    """Run `prompts` (right-padded to the longest) in the budget's chunks and keep the units at
    `sites`, one entry per prompt; with `grad` they keep their gradients. The LM head runs at
    one position only: these passes are for activations, not logits."""
    width = max(len(p) for p in prompts)

    def run(chunk: list[Prompt]):
        stored: dict = {}
        with Hooks(model, keep) as hooks:
            for site in sites:
                hooks.at(site, store_edit(site, stored, (len(chunk), width), detach=not grad))
            head_at_one(model, hooks)
            call(*pad_to(chunk, pad_id, device, width))
        return None, stored

    found: dict = {}
    joined(budget.chunks(prompts, run, what), found)
    return found


def joined(chunks, stored: dict):
    """Concatenate the chunks' (output, units kept per site): the units go into `stored`, the
    outputs (None, or tensors) are returned as one."""
    outputs, parts = [], {}
    for _, (output, found) in chunks:
        outputs.append(output)
        for site, units in found.items():
            parts.setdefault(site, []).append(units)
    while parts:  # one site at a time: the chunks of the others are not copied twice at once
        site, units = parts.popitem()
        stored[site] = torch.cat(units) if len(units) > 1 else units[0]
        del units
    if not outputs or outputs[0] is None:
        return None
    return torch.cat(outputs) if len(outputs) > 1 else outputs[0]


def head_at_one(model: nn.Module, hooks: Hooks) -> None:
    """Run the LM head at the last position only (its input cut to one token): a pass that keeps
    activations does not need a (tokens × vocabulary) logits tensor per row."""
    head = getattr(model, "get_output_embeddings", lambda: None)()
    if head is not None:
        hooks.on(head, "input", lambda h: h[:, -1:] if h.dim() == 3 else None)


def pad_to(prompts: list[Prompt], pad_id: int, device, width: int = 0):
    """`pad`, right-padded to at least `width` tokens: a pass in chunks pads every chunk as the
    whole batch would be, so chunks join and give what one pass would."""
    ids, mask = pad(prompts, pad_id, device)
    extra = width - mask.shape[1]
    if extra <= 0 or ids.shape[:2] != mask.shape:
        return ids, mask
    mask = torch.nn.functional.pad(mask, (0, extra))
    if ids.dtype == torch.long:
        return torch.nn.functional.pad(ids, (0, extra), value=pad_id), mask
    return torch.cat([ids, ids.new_zeros((ids.shape[0], extra, *ids.shape[2:]))], dim=1), mask
