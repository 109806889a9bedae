"""Results for the figure tests: built by hand (exact values, hostile tokens) or run on a tiny
GPT-2."""

from __future__ import annotations

import pytest
import torch

import nbvene as nv
from nbvene.results import Axis, Result

PATCH = 'base: "a b c"\nsource: "a b d"\npatch: block_output layer=* pos=*\n'


def hand_built(
    values,
    axes: dict,
    *,
    spec: str = PATCH,
    metric: str = 'logit_diff(" c", " d")',
    corrupted=None,
    clean=None,
) -> Result:
    """A Result with the given values over `axes` (name → labels; `pos` labels are tokens)."""
    values = torch.tensor(values, dtype=torch.float32)
    built = tuple(
        Axis(name, labels, tuple(range(len(labels))) if name == "pos" else None)
        for name, labels in axes.items()
    )
    return Result(
        values,
        built,
        nv.parse(spec + f"metric: {metric}"),
        metric,
        _tensor(clean),
        _tensor(corrupted),
    )


@pytest.fixture(scope="module")
def gpt2():
    return nv.models.tiny("gpt2", layers=3)


@pytest.fixture
def built():
    """`built(values, {"layer": [0, 1], "pos": ["a", " b"]}, spec=..., metric=...)`."""
    return hand_built


def _tensor(values) -> torch.Tensor | None:
    return None if values is None else torch.tensor(values, dtype=torch.float32)
