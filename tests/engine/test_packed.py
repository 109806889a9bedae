"""Packed passes: a sweep's rows laid end to end in one sequence, each from its first patched
position to its read position, joining at its own block. Same numbers as full forward passes
(also tests/engine/test_suffix.py, per family), passes sized in tokens by max_batch, an
out-of-memory halves them, and a stop keeps the finished cells; the model comes out clean."""

import pytest
import torch
from faults import OUT_OF_MEMORY, Passes, Snapshot, assert_keeps_finished, on_call

import nbvene as nv
from nbvene.engine.run import Sweep, execute
from nbvene.engine.tail import Tail

PROMPTS = ["The Colosseum is located in the city of", "The Eiffel Tower is in the city of"]
TRACE = f"""
base:    {PROMPTS}
corrupt: noise 3σ on "city" samples=2
restore: block_output layer=* pos=-4..-1
metric:  p(" Paris")
""".replace("'", '"')
MIXED = """
base:   "The Colosseum is located in the city of"
source: "The Eiffel Tower is located in the city of"
patch:  z layer=* head=0..1 pos=2..3
patch:  mlp_output layer=1 pos=-1
metric: logit_diff(" Paris", " Rome")
"""


@pytest.fixture(scope="module")
def llama():
    return nv.models.tiny("llama", layers=3)


def width(tok, prompts=PROMPTS):
    return max(len(tok(p).input_ids) for p in prompts)


def grid_tokens(model, tok, spec, **options):
    """The grid's packed passes: (lanes, slots, tokens of the rows) of each."""
    plan = nv.plan(spec, model=model, tokenizer=tok)
    assert Sweep(plan, start_at_layer=True).packing
    passes = []
    packed = Tail.packed

    def spy(tail, layout, read):
        passes.append((len(layout.starts), layout.length, sum(layout.lengths)))
        return packed(tail, layout, read)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Tail, "packed", spy)
        res = nv.run(spec, model=model, tokenizer=tok, **options)
    return res, passes


def grid_passes(model, tok, max_batch):
    """TRACE's grid passes (as `grid_tokens` gives them), and the number of the first among
    all passes through the final norm."""
    _, grid = grid_tokens(model, tok, TRACE, max_batch=max_batch)
    with Passes(model.model.norm) as passes:
        nv.run(TRACE, model=model, tokenizer=tok, max_batch=max_batch)
    return grid, len(passes.rows) - len(grid) + 1


@pytest.mark.parametrize("spec", [TRACE, MIXED], ids=["trace", "mixed sites"])
def test_packed_rows_equal_full_forward_passes(llama, spec):
    model, tok = llama
    clean = Snapshot(model)
    plan = nv.plan(spec, model=model, tokenizer=tok)
    expected = execute(plan, start_at_layer=False).values
    for max_batch in (1, 3, 64):
        got = execute(plan, max_batch=max_batch).values
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    clean.assert_clean()


def test_a_pass_holds_the_tokens_of_max_batch_rows(llama):
    model, tok = llama
    res, grid = grid_tokens(model, tok, TRACE, max_batch=2)
    full = nv.run(TRACE, model=model, tokenizer=tok, max_batch=64)
    torch.testing.assert_close(res.values, full.values, atol=1e-6, rtol=1e-5)
    assert len(grid) > 1 and all(tokens <= 2 * width(tok) for _, _, tokens in grid)
    _, one = grid_tokens(model, tok, TRACE, max_batch=64)
    assert len(one) == 1
    lanes, slots, tokens = one[0]
    assert tokens <= lanes * slots < res.values.numel() * 2 * width(tok)  # less than whole rows


def test_an_out_of_memory_in_a_packed_pass_halves_it(llama):
    model, tok = llama
    clean = Snapshot(model)
    full = nv.run(TRACE, model=model, tokenizer=tok, max_batch=4)
    grid, first_grid = grid_passes(model, tok, max_batch=4)
    with Passes(model.model.norm, on_call(first_grid, error=OUT_OF_MEMORY["cuda-message"])):
        res = nv.run(TRACE, model=model, tokenizer=tok, max_batch=4)
    torch.testing.assert_close(res.values, full.values, atol=1e-6, rtol=1e-5)
    _, halved = grid_tokens(model, tok, TRACE, max_batch=2)
    assert len(halved) > len(grid)  # the halved size holds fewer tokens a pass
    clean.assert_clean()


def test_a_stop_in_a_packed_grid_keeps_the_finished_cells(llama):
    model, tok = llama
    clean = Snapshot(model)
    full = nv.run(TRACE, model=model, tokenizer=tok, max_batch=2)
    grid, first_grid = grid_passes(model, tok, max_batch=2)
    stop_at = first_grid + len(grid) // 2
    with (
        Passes(model.model.norm, on_call(stop_at, error=KeyboardInterrupt)),
        pytest.raises(nv.SweepInterrupted) as info,
    ):
        nv.run(TRACE, model=model, tokenizer=tok, max_batch=2)
    assert_keeps_finished(info.value.result, full)
    clean.assert_clean()


def test_rows_patched_at_a_block_output_start_after_it(llama):
    """A row patched at block l's output runs blocks l+1.. only (its patch applied at block
    l+1's input); one patched at the last block's output runs no block, only the norm."""
    model, tok = llama
    spec = """
        base:   "The Colosseum is located in the city of"
        source: "The Eiffel Tower is located in the city of"
        patch:  block_output layer=* pos=-1
        metric: logit_diff(" Paris", " Rome")"""
    calls = {i: [] for i in range(3)}
    hooks = [
        block.register_forward_pre_hook(
            lambda m, a, k, i=i: calls[i].append(k.get("hidden_states", a[0] if a else None)),
            with_kwargs=True,
        )
        for i, block in enumerate(model.model.layers)
    ]
    try:
        res = nv.run(spec, model=model, tokenizer=tok)
    finally:
        for hook in hooks:
            hook.remove()
    grid = {i: [h.shape[:2] for h in calls[i] if h.shape[1] == 1] for i in calls}
    assert grid == {0: [], 1: [(1, 1)], 2: [(2, 1)]}  # lanes of one token
    plan = nv.plan(spec, model=model, tokenizer=tok)
    expected = execute(plan, start_at_layer=False).values
    torch.testing.assert_close(res.values, expected, atol=1e-5, rtol=1e-5)
