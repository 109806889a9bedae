"""Batched sweeps equal cell-by-cell runs; starting at the patched layer equals the full
forward; interrupted sweeps keep their finished cells and leave the model clean."""

import pytest
import torch

import nbvene as nv
from nbvene.engine.run import execute

SWEEPS = {
    "layer x pos restore": """
        base:    "The Eiffel Tower is located in the city of"
        corrupt: noise 3σ on "The Eiffel Tower" samples=2
        restore: block_output layer=* pos=*
        metric:  p(" Paris")""",
    "window of mlp": """
        base:    "The Eiffel Tower is located in the city of"
        corrupt: noise 3σ on "The Eiffel Tower"
        restore: mlp_output layer=* pos=* window=3
        metric:  logprob(" Paris")""",
    "layer x head at last pos": """
        base:   "The Colosseum is located in the city of"
        source: "The Eiffel Tower is located in the city of"
        patch:  head_attention_value_output layer=* pos=-1 head=*
        metric: logit_diff(" Paris", " Rome")""",
    "layer x pos x head": """
        base:   "The Colosseum is located in the city of"
        source: "The Eiffel Tower is located in the city of"
        patch:  head_value_output layer=* pos=* head=*
        metric: logit_diff(" Paris", " Rome") normalized""",
    "batch of bases": """
        base:   ["The Colosseum is located in the city of", "The Eiffel Tower is in"]
        source: "The Eiffel Tower is located in the city of"
        patch:  attention_output layer=* pos=-1
        metric: kl""",
}


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request):
    return nv.models.tiny(request.param, layers=4)


def cell_by_cell(plan) -> torch.Tensor:
    """Each row alone, full forward passes."""
    return execute(plan, max_batch=1, start_at_layer=False).values


@pytest.mark.parametrize("sweep", SWEEPS)
def test_batched_equals_cell_by_cell(tiny, sweep):
    model, tok = tiny
    plan = nv.plan(SWEEPS[sweep], model=model, tokenizer=tok)
    expected = cell_by_cell(plan)
    for chunk in (1, 7, 10_000):
        for start_at_layer in (False, True):
            if chunk == 1 and not start_at_layer:
                continue  # that is the reference
            got = execute(plan, max_batch=chunk, start_at_layer=start_at_layer).values
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_start_at_layer_is_used_and_skips_work(tiny):
    """The rows patched late really start late: the first blocks run once (the corrupted
    run) instead of once per row."""
    model, tok = tiny
    blocks = nv.SiteMap(model).family.blocks
    first = model.get_submodule(blocks)[0]
    calls = []
    handle = first.register_forward_hook(lambda *a: calls.append(1))
    try:
        nv.run(SWEEPS["layer x pos restore"], model=model, tokenizer=tok, max_batch=11)
        with_tail = len(calls)
        calls.clear()
        nv.run(
            SWEEPS["layer x pos restore"],
            model=model,
            tokenizer=tok,
            max_batch=11,
            start_at_layer=False,
        )
    finally:
        handle.remove()
    assert with_tail < len(calls)


def test_shapes_follow_transformer_lens(tiny):
    model, tok = tiny
    res = nv.run(SWEEPS["layer x pos x head"], model=model, tokenizer=tok)
    n_tokens = len(tok("The Colosseum is located in the city of").input_ids)
    kv_heads = nv.SiteMap(model).shape.kv_heads
    assert res.axes == ("layer", "pos", "head")
    assert res.values.shape == (4, n_tokens, kv_heads)


def test_interrupted_sweep_keeps_finished_cells(tiny):
    model, tok = tiny
    seen = []

    def stop_after_two_chunks(done, total):
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(nv.SweepInterrupted) as info:
        nv.run(
            SWEEPS["layer x pos restore"],
            model=model,
            tokenizer=tok,
            max_batch=5,
            progress=stop_after_two_chunks,
        )
    partial = info.value.result
    full = nv.run(SWEEPS["layer x pos restore"], model=model, tokenizer=tok)
    finished = ~torch.isnan(partial.values)
    assert partial.values.shape == full.values.shape
    assert 0 < int(finished.sum()) < partial.values.numel()
    torch.testing.assert_close(partial.values[finished], full.values[finished], atol=1e-6, rtol=0)
    assert isinstance(info.value, KeyboardInterrupt)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_memory_budget(tiny):
    model, tok = tiny
    with pytest.raises(nv.NbveneError, match="less than one row needs"):
        nv.run(SWEEPS["layer x pos restore"], model=model, tokenizer=tok, max_memory="1KB")
    chunks = []
    nv.run(
        SWEEPS["layer x pos restore"],
        model=model,
        tokenizer=tok,
        max_memory="1MB",
        progress=lambda done, total: chunks.append(done),
    )
    assert len(chunks) > 1


def test_models_that_scale_their_logits_run_full_forwards():
    """Granite divides its logits after the head: starting at a layer must not skip that."""
    import transformers

    _, tok = nv.models.tiny("llama")
    config = transformers.AutoConfig.for_model(
        "granite",
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        num_hidden_layers=3,
        vocab_size=len(tok),
        logits_scaling=4.0,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    plan = nv.plan(SWEEPS["layer x head at last pos"], model=model, tokenizer=tok)
    expected = cell_by_cell(plan)
    torch.testing.assert_close(execute(plan, max_batch=5).values, expected, atol=1e-5, rtol=1e-5)
