"""ROME's causal trace in one call: the block, MLP and attention panels side by side."""

from __future__ import annotations

import json

import torch
from torch import nn

from nbvene.api import run
from nbvene.engine.lock import runs_model
from nbvene.engine.rerun import Rerun
from nbvene.results import Axis, Result

PANELS = {"block": "block_output", "mlp": "mlp_output", "attention": "attention_output"}


@runs_model
def causal_trace(
    prompt: str,
    subject: str,
    target: str,
    *,
    model: nn.Module,
    tokenizer,
    noise: float = 3.0,
    samples: int = 10,
    window: int = 10,
    seed: int = 0,
    normalized: bool = False,
    max_batch: int = 64,
) -> Result:
    """Corrupt the subject with noise (`noise` × the embedding std), then restore one state at a
    time: single block outputs, and windows of `window` MLP / attention outputs around each
    layer, as in Meng et al. (2022). Returns values of shape (3, layers, positions) over the
    axes ("panel", "layer", "pos"), the panels being block, mlp and attention.

    >>> res = nv.causal_trace("The Eiffel Tower is located in the city of",
    ...                       subject="The Eiffel Tower", target=" Paris", model=m, tokenizer=t)
    """
    specs = {}
    for panel, component in PANELS.items():
        windowed = f" window={window}" if panel != "block" and window > 1 else ""
        specs[panel] = (
            f"base:    {json.dumps(prompt)}\n"
            f"corrupt: noise {noise:g}σ on {json.dumps(subject)} samples={samples} seed={seed}\n"
            f"restore: {component} layer=* pos=*{windowed}\n"
            f"metric:  p({json.dumps(target)}){' normalized' if normalized else ''}"
        )
    results = {
        panel: run(text, model=model, tokenizer=tokenizer, max_batch=max_batch)
        for panel, text in specs.items()
    }
    first = results["block"]
    traced = Result(
        values=torch.stack([r.values for r in results.values()]),
        axes=(Axis("panel", tuple(PANELS)), *first.axes),
        spec=first.spec,
        metric=first.metric,
        clean=first.clean,
        corrupted=first.corrupted,
        meta={**first.meta, "specs": specs},
        # one plan per panel, so a heatmap click can re-run the cell it names
        rerun=Rerun.panels([r.rerun for r in results.values()]),
    )
    return traced
