"""Packed passes on the edge cases: prompts of different lengths, sites inside the block, rows
with units at several layers, user functions, zero, steering, mean ablation, normalised and KL
metrics, families the suffix tests leave out, Gemma 2 past its sliding window, bfloat16 models,
one row a pass and a stop mid-grid. Each gives the numbers of full forward passes (and of the
rows-per-entry path), and the model comes out clean."""

import pytest
import torch
from faults import Passes, Snapshot, on_call

import nbvene as nv
from nbvene.engine.run import Sweep, execute
from nbvene.models.tokenizer import tiny_tokenizer

SHORT = "The Eiffel Tower is in"
LONG = "The Colosseum is located in the very old city of"
SOURCE = "The Eiffel Tower is located in the very old city of"
STEER = torch.randn(64, generator=torch.Generator().manual_seed(0))


def halfway(base, source):
    return (base + source) / 2


NAMESPACE = {
    "steer": STEER,
    "halfway": halfway,
    "reference": ["Rome is a city", "Paris is a city", "I love Paris"],
}

CASES = {
    "lengths, last token": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  block_output layer=* pos=-1
        metric: logit_diff(" Paris", " Rome")""",
    "lengths, last three": f"""
        base:   ["{LONG}", "{SHORT}", "I love Paris"]
        source: "{SOURCE}"
        patch:  mlp_output layer=* pos=-3..-1
        metric: p(" Paris")""",
    "lengths, noise": f"""
        base:    ["{LONG}", "{SHORT}"]
        corrupt: noise 3σ on "The" samples=3
        restore: block_output layer=* pos=-3..-1
        metric:  p(" Paris")""",
    "two statements at two layers": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  block_output layer=1 pos=1
        patch:  attention_output layer=* pos=-2
        metric: logit_diff(" Paris", " Rome")""",
    "a later unit fixed, an earlier swept": f"""
        base:   "{LONG}"
        source: "{SOURCE}"
        patch:  mlp_output layer=0 pos=-1
        patch:  block_input layer=* pos=2
        metric: logprob(" Paris")""",
    "block_input": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  block_input layer=* pos=-4..-1
        metric: p(" Paris")""",
    "resid_mid": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  resid_mid layer=* pos=-2..-1
        metric: p(" Paris")""",
    "head z": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  z layer=* head=* pos=2
        metric: logit_diff(" Paris", " Rome")""",
    "head q": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  q layer=* head=0..1 pos=-2
        metric: logit_diff(" Paris", " Rome")""",
    "head k": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  k layer=* head=* pos=1
        metric: logit_diff(" Paris", " Rome")""",
    "head v": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  v layer=* head=* pos=-3
        metric: logit_diff(" Paris", " Rome")""",
    "via a function": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  block_output layer=* pos=-2..-1 via {{halfway}}
        metric: p(" Paris")""",
    "zero": f"""
        base:   ["{LONG}", "{SHORT}"]
        zero:   mlp_output layer=* pos=-4..-1
        metric: p(" Paris")""",
    "steering": f"""
        base:   ["{LONG}", "{SHORT}"]
        add:    block_output layer=* pos=-1 by {{steer}} * 2
        metric: logprob(" Paris")""",
    "mean": f"""
        base:   ["{LONG}", "{SHORT}"]
        mean:   mlp_output layer=* pos=-4..-1 over={{reference}}
        metric: p(" Paris")""",
    "normalized": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  block_output layer=* pos=-4..-1
        metric: logit_diff(" Paris", " Rome") normalized""",
    "kl": f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        patch:  attention_output layer=* pos=-4..-1
        metric: kl""",
}


@pytest.fixture(scope="module")
def llama():
    return nv.models.tiny("llama", layers=3)


def plan_of(spec, model, tok):
    return nv.plan(spec, model=model, tokenizer=tok, namespace=NAMESPACE)


def assert_packed_equals_full(model, tok, spec, *, atol=1e-5, rtol=1e-5, batches=(1, 4, 64)):
    clean = Snapshot(model)
    plan = plan_of(spec, model, tok)
    assert Sweep(plan, start_at_layer=True).packing  # the case does run packed
    expected = execute(plan, start_at_layer=False).values
    assert not expected.isnan().all()
    for max_batch in batches:
        got = execute(plan, max_batch=max_batch).values
        torch.testing.assert_close(got, expected, atol=atol, rtol=rtol, equal_nan=True)
    clean.assert_clean()


@pytest.mark.parametrize("case", CASES)
def test_packed_cases_equal_full_forward_passes(llama, case):
    model, tok = llama
    assert_packed_equals_full(model, tok, CASES[case])


FAMILIES = ["mistral", "qwen2", "olmo", "gemma"]


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", ["lengths, noise", "two statements at two layers", "head v"])
def test_families_the_suffix_tests_leave_out(family, attention, case):
    model, tok = nv.models.tiny(family, layers=3)
    model.config._attn_implementation = attention
    assert_packed_equals_full(model, tok, CASES[case], batches=(3, 64))


WINDOWED = {
    "gemma2": {"sliding_window": 4},
    "mistral": {"sliding_window": 4},
    "qwen2": {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1},
}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", WINDOWED)
@pytest.mark.parametrize("case", ["lengths, noise", "two statements at two layers", "head z"])
def test_prompts_longer_than_the_sliding_window(family, attention, case):
    overrides = dict(WINDOWED[family])
    if (family, attention) == ("gemma2", "sdpa"):  # its softcapping runs under eager only
        overrides["attn_logit_softcapping"] = None
    model, tok = nv.models.tiny(family, layers=3, **overrides)
    model.config._attn_implementation = attention
    assert_packed_equals_full(model, tok, CASES[case], batches=(3, 64))


def test_a_read_before_the_last_token():
    """A prompt read at its mask token reads mid-prompt: rows patched after it still run."""
    masked = tiny_tokenizer(masked=True)
    model, _ = nv.models.tiny("llama", layers=3, vocab_size=len(masked))
    spec = f"""
        base:   ["The Colosseum is in [MASK] and the city of", "{SHORT}"]
        source: "The Eiffel Tower is in [MASK] and the city of"
        patch:  block_output layer=* pos=-6..-1
        metric: logit_diff(" Paris", " Rome")"""
    plan = plan_of(spec, model, masked)
    assert plan.base[0].read_at < len(plan.base[0]) - 1
    assert_packed_equals_full(model, masked, spec)
