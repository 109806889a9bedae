"""Gradient checkpointing for long prompts: each block keeps only its inputs in the forward pass
and runs again in the backward pass; the blocks are given back as they were."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.utils.checkpoint import checkpoint

from nbvene.sites import SiteMap


@contextmanager
def checkpointed(model: nn.Module, sites: SiteMap) -> Iterator[list[nn.Module]]:
    """Inside the block, the model's blocks (those of its family, else its child modules) run
    under `torch.utils.checkpoint`. The model's own flags (transformers'
    `gradient_checkpointing`, train/eval mode) are not touched, so it works in eval mode."""
    family = sites.family
    if family is not None:
        modules = list(model.get_submodule(family.blocks))
    else:
        modules = list(model.children())
    wrapped = []
    try:
        for module in modules:
            # an instance attribute `forward` (someone's own patch) is wrapped and put back
            own = module.__dict__.get("forward")
            module.forward = functools.partial(
                checkpoint, own or module.forward, use_reentrant=False
            )
            wrapped.append((module, own))
        yield modules
    finally:
        for module, own in wrapped:
            if own is None:
                del module.forward
            else:
                module.forward = own
