"""Rows patched from position p on run positions p.. only, on the corrupted run's kept keys and
values: the same numbers as full forward passes, on every family that takes part, with eager
and SDPA attention."""

import pytest
import torch

import nbvene as nv
from nbvene.engine.run import Sweep, execute

FAMILIES = ["llama", "gpt2", "gpt_neox", "gemma2"]

SWEEPS = {
    "block_output last": """
        base:    "The Eiffel Tower is located in the city of"
        corrupt: noise 3σ on "The Eiffel Tower"
        restore: block_output layer=* pos=-1
        metric:  p(" Paris")""",
    "mlp_output middle": """
        base:   "The Colosseum is located in the city of"
        source: "The Eiffel Tower is located in the city of"
        patch:  mlp_output layer=* pos=4
        metric: logit_diff(" Paris", " Rome")""",
    "attention_output every position": """
        base:   "The Colosseum is located in the city of"
        source: "The Eiffel Tower is located in the city of"
        patch:  attention_output layer=* pos=*
        metric: logprob(" Paris")""",
    "head z last": """
        base:   "The Colosseum is located in the city of"
        source: "The Eiffel Tower is located in the city of"
        patch:  z layer=* head=* pos=-1
        metric: logit_diff(" Paris", " Rome")""",
    "head z middle, two bases": """
        base:   ["The Colosseum is located in the city of", "The Eiffel Tower is in"]
        source: "The Eiffel Tower is located in the city of"
        patch:  z layer=* head=* pos=3
        metric: kl""",
}


@pytest.fixture(scope="module", params=[(f, a) for f in FAMILIES for a in ("eager", "sdpa")])
def tiny(request):
    family, attention = request.param
    # Gemma 2's attention logit softcapping runs under eager attention only
    softcap = (family, attention) == ("gemma2", "sdpa")
    overrides = {"attn_logit_softcapping": None} if softcap else {}
    model, tok = nv.models.tiny(family, layers=3, **overrides)
    model.config._attn_implementation = attention
    return model, tok


@pytest.mark.parametrize("sweep", SWEEPS)
def test_suffix_rows_equal_full_forwards(tiny, sweep):
    model, tok = tiny
    plan = nv.plan(SWEEPS[sweep], model=model, tokenizer=tok)
    expected = execute(plan, max_batch=64, start_at_layer=False).values
    for chunk in (5, 64):
        got = execute(plan, max_batch=chunk).values
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_families_run_suffixes(tiny):
    """The families tested above do take the suffix path (they are not silently full runs)."""
    model, tok = tiny
    plan = nv.plan(SWEEPS["head z last"], model=model, tokenizer=tok)
    sweep = Sweep(plan, start_at_layer=True)
    sweep.run(None)
    assert sweep.tail.suffixes
    assert all(sweep.since(r) > 0 for r in plan.rows)


def test_rows_join_at_their_own_layer():
    """A `layer=* pos=-1` sweep in one chunk runs each row from its own layer: the blocks see
    no more tokens than the lower count (the source and corrupted runs, then one position in
    the layers - l - 1 blocks after it per row patched at block l's output)."""
    model, tok = nv.models.tiny("llama", layers=4)
    seen = []
    hooks = [
        block.register_forward_pre_hook(
            lambda m, a, k: seen.append(k.get("hidden_states", a[0] if a else None).shape[:2]),
            with_kwargs=True,
        )
        for block in model.model.layers
    ]
    try:
        nv.run(SWEEPS["block_output last"], model=model, tokenizer=tok, max_batch=64)
    finally:
        for hook in hooks:
            hook.remove()
    width = len(tok("The Eiffel Tower is located in the city of").input_ids)
    # the clean run and the corrupted run, one pass of two rows: 4 blocks
    assert seen[:4] == [(2, width)] * 4
    assert sum(rows * tokens for rows, tokens in seen[4:]) == 3 + 2 + 1 + 0
