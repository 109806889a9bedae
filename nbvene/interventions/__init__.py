"""Interventions: small modules with one method, `forward(base, source) -> new`.

`base` holds the units at the intervened locations, shape (n, d); `source` the matching units
from the source run (or a vector broadcast to that shape). A plain function works the same way.
The trainable ones (`via rotated(k=1)`) are in `nbvene.interventions.trainable`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Intervention(nn.Module):
    """The interface: replace `base` units, knowing the matching `source` units."""

    needs_source = True

    def forward(self, base: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class Interchange(Intervention):
    """Patch / restore: take the source's value."""

    def forward(self, base, source):
        return source


class Add(Intervention):
    """Add the source (a vector, or the source run's activation)."""

    def forward(self, base, source):
        return base + source


class Subtract(Intervention):
    """Subtract the source (a vector, or the source run's activation)."""

    def forward(self, base, source):
        return base - source


class Zero(Intervention):
    """Zero-ablation."""

    needs_source = False

    def forward(self, base, source):
        return torch.zeros_like(base)


class Collect(Intervention):
    """Read the units and leave them as they are."""

    needs_source = False

    def forward(self, base, source):
        return base


class Function(Intervention):
    """Any callable `f(base, source) -> tensor`."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, base, source):
        return self.fn(base, source)

    def extra_repr(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def as_intervention(value) -> nn.Module:
    """An `Intervention` from a module or a callable given in the namespace."""
    if isinstance(value, nn.Module):
        return value
    if callable(value):
        return Function(value)
    raise TypeError(f"not an intervention or a callable: {type(value).__name__}")
