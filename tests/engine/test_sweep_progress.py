"""Progress from the first forward pass, Stop between blocks, and each cell's top tokens kept by
the sweep: a sweep that can be stopped starts with one cell's rows, a `stop()` set inside a
block is obeyed before the next block runs, and `Result.top` is what a click would compute."""

import pytest
import torch
from faults import Passes, Snapshot

import nbvene as nv
from nbvene.widgets.heatmap import cell_detail

PROMPT = "The Eiffel Tower is located in the city of"
TRACE = f"""
base:    "{PROMPT}"
corrupt: noise 3σ on "The Eiffel Tower" samples=2
restore: block_output layer=* pos=*
metric:  p(" Paris")
"""
BATCHED = """
base:   ["The Colosseum is located in the city of", "The Eiffel Tower is in the city of"]
source: ["The Eiffel Tower is located in the city of", "The Colosseum is in the city of"]
patch:  block_output layer=* pos=-2..-1
metric: logit_diff(" Paris", " Rome")
"""


@pytest.fixture(scope="module")
def llama(rows_per_entry):
    return nv.models.tiny("llama", layers=4)


@pytest.fixture(scope="module")
def full(llama):
    model, tok = llama
    return nv.run(TRACE, model=model, tokenizer=tok)


def test_a_stoppable_sweep_reports_after_its_first_small_pass(llama, full):
    model, tok = llama
    seen = []  # (cells done, grid passes so far) at each progress call
    with Passes(model.model.norm) as passes:
        res = nv.run(
            TRACE,
            model=model,
            tokenizer=tok,
            stop=lambda: False,
            progress=lambda done, total: seen.append((done, list(passes.rows))),
        )
    before_grid = 1  # the clean run and the corrupted baseline (2 noise samples): one pass
    first_done, rows = seen[0]
    assert first_done == 1  # one cell after one pass of that cell's 2 noise samples
    assert rows[before_grid:] == [2]
    # then the chunks, as without a preview: the first cell again, and the very same numbers
    assert passes.rows[before_grid:] == [2, 64, 24]  # 44 cells × 2 samples
    assert [done for done, _ in seen] == [1, 32, 44]
    assert torch.equal(res.values, full.values) and torch.equal(res.top["ids"], full.top["ids"])


def test_without_stop_a_sweep_runs_in_chunks_of_max_batch(llama, full):
    model, tok = llama
    with Passes(model.model.norm) as passes:
        nv.run(TRACE, model=model, tokenizer=tok, max_batch=16)
    # after the clean run and the baseline (one pass of 3 rows), 88 rows: unchanged
    assert passes.rows == [3] + [16] * 5 + [8]


def test_stop_set_during_a_block_stops_before_the_next_block(llama):
    model, tok = llama
    clean = Snapshot(model)
    blocks = model.model.layers
    asked = {"stop": False}
    calls = []

    def block_zero(module, args):
        calls.append(0)
        # block 0 of the grid's first pass (the clean run and baseline's one pass, the grid)
        if calls.count(0) == 2:
            asked["stop"] = True

    handles = [blocks[0].register_forward_pre_hook(block_zero)]
    handles += [
        blocks[i].register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
        for i in range(1, len(blocks))
    ]
    try:
        with pytest.raises(nv.SweepInterrupted) as info:
            nv.run(TRACE, model=model, tokenizer=tok, stop=lambda: asked["stop"])
    finally:
        for handle in handles:
            handle.remove()
    # the user's hooks run before nbvene's check: block 0 ran its pre-hooks, nothing after
    assert calls[-1] == 0 and calls.count(0) == 2
    assert bool(info.value.result.values.isnan().all())
    clean.assert_clean()


def test_stop_is_asked_before_every_block(llama):
    model, tok = llama
    asked = []
    blocks = [Passes(b) for b in model.model.layers]
    try:
        with Passes(model) as whole:
            nv.run(TRACE, model=model, tokenizer=tok, stop=lambda: asked.append(1) and False)
    finally:
        for each in blocks:
            each.__exit__()
    # rows that start at their layer call the blocks without the model: each call is asked
    assert len(asked) == len(whole.rows) + sum(len(b.rows) for b in blocks)
    assert len(blocks[0].rows) < len(blocks[-1].rows)  # some passes started above block 0


def test_stop_must_be_callable(llama):
    model, tok = llama
    with pytest.raises(nv.NbveneError, match="stop must be a function"):
        nv.run(TRACE, model=model, tokenizer=tok, stop=True)


def test_top_tokens_of_every_cell_are_what_a_click_computes(llama, full):
    _, tok = llama
    top = full.top
    assert set(top) == {"ids", "probs"}
    assert top["ids"].shape == (*full.values.shape, 5) and top["ids"].dtype == torch.long
    assert top["probs"].dtype == torch.float32 and top["probs"].device.type == "cpu"
    for index in [(0, 0), (1, 3), (3, len(full.axes[1].labels) - 1)]:
        shown = cell_detail(full, index)["patched"]["top"]
        assert top["ids"][index].tolist() == [t["id"] for t in shown]
        torch.testing.assert_close(
            top["probs"][index], torch.tensor([t["p"] for t in shown]), rtol=1e-5, atol=1e-7
        )
    # p(" Paris") is the cell's value; where Paris is among the top tokens, the same number
    paris = tok(" Paris", add_special_tokens=False).input_ids[-1]
    found = top["ids"] == paris
    torch.testing.assert_close(
        top["probs"][found], full.values.unsqueeze(-1).expand_as(found)[found], rtol=1e-5, atol=0
    )


def test_top_tokens_follow_the_values_layout(llama):
    model, tok = llama
    res = nv.run(BATCHED, model=model, tokenizer=tok, max_batch=3)
    assert res.values.shape == (2, 4, 2)
    assert res.top["ids"].shape == (2, 4, 2, 5) and bool((res.top["ids"] >= 0).all())
    one = res.slice(1)
    assert torch.equal(one.top["probs"], res.top["probs"][1])
    first = BATCHED.replace('", "The Eiffel Tower is in the city of"', '"').replace(
        '", "The Colosseum is in the city of"', '"'
    )
    example = nv.run(first, model=model, tokenizer=tok)
    assert example.top["ids"].shape == (*example.values.shape, 5) == (1, 4, 2, 5)
    assert torch.equal(example.top["ids"], res.top["ids"][:1])


def test_an_interrupted_sweep_keeps_the_top_tokens_of_its_finished_cells(llama, full):
    model, tok = llama
    seen = []
    with pytest.raises(nv.SweepInterrupted) as info:  # stopped after the second chunk
        nv.run(
            TRACE,
            model=model,
            tokenizer=tok,
            progress=lambda done, total: seen.append(done),
            stop=lambda: len(seen) >= 2,
        )
    partial = info.value.result
    finished = partial.values.isfinite()
    assert int(finished.sum()) == seen[-1] == 32  # the preview, then the first chunk
    assert bool((partial.top["ids"][finished] >= 0).all())
    assert bool((partial.top["ids"][~finished] == -1).all())
    assert bool(partial.top["probs"][~finished].isnan().all())
    assert torch.equal(partial.top["ids"][finished], full.top["ids"][finished])


def test_collected_units_keep_no_top_tokens(llama):
    model, tok = llama
    res = nv.run(
        f'base: "{PROMPT}"\ncollect: block_output layer=* pos=-1', model=model, tokenizer=tok
    )
    assert res.top is None


def test_causal_trace_stacks_its_panels_top_tokens(llama):
    model, tok = llama
    res = nv.causal_trace(
        PROMPT, subject="The Eiffel Tower", target=" Paris", model=model, tokenizer=tok, samples=2
    )
    assert res.top["ids"].shape == (*res.values.shape, 5)
    shown = cell_detail(res, (2, 1, 4))["patched"]["top"]
    assert res.top["ids"][2, 1, 4].tolist() == [t["id"] for t in shown]


def test_stop_in_the_second_panel_of_a_causal_trace_keeps_the_first(llama):
    model, tok = llama
    trace = dict(subject="The Eiffel Tower", target=" Paris", model=model, tokenizer=tok)
    with Passes(model.model.norm) as passes:
        nv.causal_trace(PROMPT, **trace, samples=2, stop=lambda: False)
    per_panel = len(passes.rows) // 3
    with Passes(model.model.norm) as passes, pytest.raises(nv.SweepInterrupted) as info:
        # stopped after the second panel's clean run and baseline (one pass) and first cell
        nv.causal_trace(PROMPT, **trace, samples=2, stop=lambda: len(passes.rows) >= per_panel + 2)
    partial = info.value.result
    assert partial.axes == ("panel", "layer", "pos")
    assert bool(partial.values[0].isfinite().all())
    assert int(partial.values[1].isfinite().sum()) == 1
    assert bool(partial.values[2].isnan().all())
    assert partial.top["ids"].shape == (*partial.values.shape, 5)


@pytest.mark.smollm2
def test_on_smollm2_the_first_progress_is_one_cell_and_paris_tops_the_restored_last_layer():
    model, tok = nv.models.load()
    spec = TRACE.replace("pos=*", "pos=-1")
    seen = []
    with pytest.raises(nv.SweepInterrupted) as info:
        nv.run(
            spec,
            model=model,
            tokenizer=tok,
            progress=lambda done, total: seen.append((done, total)),
            stop=lambda: len(seen) >= 1,
        )
    assert seen == [(1, 30)]  # one pass of one cell's two noise samples, then Stop
    assert int(info.value.result.values.isfinite().sum()) == 1
    res = nv.run(spec, model=model, tokenizer=tok)
    paris = tok(" Paris", add_special_tokens=False).input_ids[-1]
    # the last layer's output at the last token restored: the clean run's next token
    assert int(res.top["ids"][-1, 0]) == paris
    assert float(res.top["probs"][-1, 0]) == pytest.approx(float(res.values[-1]), rel=1e-5)
    shown = cell_detail(res, (12,))["patched"]["top"]
    assert res.top["ids"][12].tolist() == [t["id"] for t in shown]
