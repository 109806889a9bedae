"""A network with a planted variable: its hidden layer stores a + b along one random direction,
and its output classifies that sum; every other direction holds random features of a and b.

    x = [one_hot(a), one_hot(b)]        (20 inputs)
    hidden = Q · M · x                   (16 units; M's first row reads a + b, the others random)
    out = 2·s·(u · hidden) − s²           for each class s = 0 … 18, with u = Q[:, 0]

`out` is −(u·hidden − s)² up to a term common to all classes, so its argmax is the sum. Patching
the source's component along u gives the source's sum; no other subspace of one dimension does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import nbvene as nv

WIDTH = 16
SPEC = """
base:   {base}
source: {source}
patch:  hidden.output via {intervention}
label:  {label}
"""


class Adder(nn.Module):
    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.hidden = nn.Linear(20, width, bias=False)
        self.out = nn.Linear(width, 19)

    def forward(self, x):
        return self.out(self.hidden(x))


def planted(seed: int = 0, width: int = WIDTH) -> tuple[Adder, torch.Tensor]:
    """The network, and the direction u that holds the sum."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(width, width, generator=g))
    m = torch.randn(width, 20, generator=g)
    m[0] = torch.cat([torch.arange(10.0), torch.arange(10.0)])
    model = Adder(width)
    s = torch.arange(19.0)
    with torch.no_grad():
        model.hidden.weight.copy_(q @ m)
        model.out.weight.copy_(2 * s[:, None] * q[:, 0][None, :])
        model.out.bias.copy_(-(s**2))
    return model.eval(), q[:, 0].clone()


def encode(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([nn.functional.one_hot(a, 10), nn.functional.one_hot(b, 10)], -1).float()


@dataclass
class Pairs:
    """Base and source inputs with their digits."""

    base: torch.Tensor
    source: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    a2: torch.Tensor
    b2: torch.Tensor

    @property
    def counterfactual(self) -> torch.Tensor:
        """The sum the output shows when the sum variable is taken from the source."""
        return self.a2 + self.b2

    def namespace(self, label: torch.Tensor | None = None) -> dict:
        label = self.counterfactual if label is None else label
        return {"base": self.base, "source": self.source, "label": label}


def pairs(n: int, seed: int) -> Pairs:
    g = torch.Generator().manual_seed(seed)
    a, b, a2, b2 = (torch.randint(0, 10, (n,), generator=g) for _ in range(4))
    return Pairs(encode(a, b), encode(a2, b2), a, b, a2, b2)


def spec(intervention: str) -> str:
    return SPEC.replace("{intervention}", intervention)


def train(intervention: str, model, data: Pairs, **options) -> nv.Trained:
    settings = {"epochs": 8, "lr": 1e-2, "batch_size": 64, "seed": 0, "progress": False}
    settings.update(options)
    label = settings.pop("label", None)
    return nv.train(spec(intervention), model=model, namespace=data.namespace(label), **settings)


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
