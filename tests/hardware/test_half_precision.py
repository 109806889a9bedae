"""Half precision: a bf16 or fp16 model runs in its own dtype, and what nbvene computes from
it (metrics, softmaxes, baselines, normalisation, DAS losses, trained parameters) is float32.

The tiny models check it fast; SmolLM2 (marker `smollm2`) checks the README's causal trace
against the float32 one within the tolerance docs/performance.md states. Run this file as a
script to measure that tolerance again:

    python tests/hardware/test_half_precision.py
"""

import copy

import pytest
import torch
from workloads import HEADS, TRACE, das_step, steered

import nbvene as nv

TINY = {"p": 1e-5, "logit_diff": 1e-2, "loss": 1e-2}
"""bf16 or fp16 against float32 on the tiny models (values near 1e-3 for p, 1e-1 for logit_diff)."""

README_TRACE = """
base:    "The Eiffel Tower is located in the city of"
corrupt: noise 3σ on "The Eiffel Tower" samples=3
restore: block_output layer=* pos=*
metric:  {metric}
"""
METRICS = {
    "p": 'p(" Paris")',
    "logit_diff": 'logit_diff(" Paris", " Rome")',
    "normalized": 'p(" Paris") normalized',
}
SMOLLM2 = {"p": 0.06, "logit_diff": 0.3, "normalized": 0.07}
"""bf16 against float32, SmolLM2-135M, the README's trace: the largest absolute difference of
any cell allowed, per metric (docs/performance.md, "Half precision", gives the measured ones)."""


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_half_precision_tiny_model_agrees_with_float32(family, dtype):
    model, tok = nv.models.tiny(family, layers=3)
    half = copy.deepcopy(model).to(dtype)
    for spec, tolerance in ((TRACE, TINY["p"]), (HEADS, TINY["logit_diff"])):
        want = nv.run(spec, model=model, tokenizer=tok)
        got = nv.run(spec, model=half, tokenizer=tok)
        assert got.values.dtype == torch.float32  # metrics come back float32
        assert got.clean is None or got.clean.dtype == torch.float32
        torch.testing.assert_close(got.values, want.values, atol=tolerance, rtol=0)
    assert next(half.parameters()).dtype == dtype  # the model ran in its own dtype
    assert steered(model, tok) == steered(half, tok)
    trained = [das_step(m, tok) for m in (model, half)]
    assert all(p.dtype == torch.float32 for p in trained[1].parameters())  # cast at the site
    losses = [t.history[0]["loss"] for t in trained]
    assert losses[1] == pytest.approx(losses[0], abs=TINY["loss"])


def measure(models) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The README's trace with each metric, on (float32, bf16) models: metric → both values."""
    (model, tok), (half, _) = models
    found = {}
    for name, metric in METRICS.items():
        spec = README_TRACE.format(metric=metric)
        want = nv.run(spec, model=model, tokenizer=tok).values
        got = nv.run(spec, model=half, tokenizer=tok).values
        found[name] = (want, got)
    return found


@pytest.fixture(scope="module")
def smollm2_both():
    return nv.models.load(), nv.models.load(dtype=torch.bfloat16)


@pytest.mark.smollm2
def test_a_bf16_smollm2_causal_trace_agrees_with_float32(smollm2_both):
    assert next(smollm2_both[1][0].parameters()).dtype == torch.bfloat16
    for name, (want, got) in measure(smollm2_both).items():
        assert got.dtype == torch.float32, name
        assert (got - want).abs().max() <= SMOLLM2[name], name
        # the heatmap's pattern: each layer's brightest position, and the brightest cell
        assert torch.equal(got.argmax(dim=1), want.argmax(dim=1)), name
        assert int(got.argmax()) == int(want.argmax()), name


if __name__ == "__main__":
    torch.set_num_threads(1)
    found = measure((nv.models.load(), nv.models.load(dtype=torch.bfloat16)))
    print("| metric | float32 range | max abs diff | mean abs diff | layer argmax equal |")
    print("|---|---|---|---|---|")
    for name, (want, got) in found.items():
        diff = (got - want).abs()
        same = int((got.argmax(1) == want.argmax(1)).sum())
        print(
            f"| {name} | {float(want.min()):.3g} … {float(want.max()):.3g} "
            f"| {float(diff.max()):.3g} | {float(diff.mean()):.3g} | {same}/{len(want)} |"
        )
