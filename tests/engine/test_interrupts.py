"""Ctrl-C during a sweep, in any pass: nv.SweepInterrupted (a KeyboardInterrupt) with the cells
that finished (none when it came before the grid), raised from inside a hook or by SIGINT; the
model comes out clean."""

import pytest
import torch
from faults import Passes, Snapshot, on_call

import nbvene as nv

SPEC = """
base:    ["The Colosseum is located in the city of", "The Eiffel Tower is in the city of"]
corrupt: noise 3σ on "city" samples=2
restore: block_output layer=* pos=-3..-1
metric:  p(" Paris") normalized
"""
# passes through the last block with max_batch=8: source (2 rows), baseline (4), grid (3 × 8)
SOURCE, BASELINE, GRID = 1, 2, 3


@pytest.fixture(scope="module")
def llama(rows_per_entry):
    return nv.models.tiny("llama")


@pytest.fixture(scope="module")
def full(llama):
    model, tok = llama
    return nv.run(SPEC, model=model, tokenizer=tok, max_batch=8)


def stop(how):
    return (lambda: "SIGINT") if how == "signal" else KeyboardInterrupt


@pytest.mark.parametrize("how", ["hook", "signal"])
@pytest.mark.parametrize("at", [SOURCE, BASELINE], ids=["source", "baseline"])
def test_an_interrupt_before_the_grid_gives_an_empty_result(llama, full, how, at):
    model, tok = llama
    clean = Snapshot(model)
    with (
        Passes(model.model.layers[-1], on_call(at, error=stop(how))) as passes,
        pytest.raises(nv.SweepInterrupted) as info,
    ):
        nv.run(SPEC, model=model, tokenizer=tok, max_batch=8)
    assert len(passes.rows) == at
    partial = info.value.result
    assert isinstance(info.value, KeyboardInterrupt) and isinstance(info.value, nv.Interrupted)
    assert partial.values.shape == full.values.shape and partial.axes == full.axes
    assert bool(partial.values.isnan().all())
    clean.assert_clean()


@pytest.mark.parametrize("how", ["hook", "signal"])
def test_an_interrupt_in_the_grid_keeps_the_finished_cells(llama, full, how):
    model, tok = llama
    clean = Snapshot(model)
    with (
        Passes(model.model.layers[-1], on_call(GRID + 1, error=stop(how))),
        pytest.raises(nv.SweepInterrupted) as info,
    ):
        nv.run(SPEC, model=model, tokenizer=tok, max_batch=8)
    partial = info.value.result
    finished = ~partial.values.isnan()
    assert 0 < int(finished.sum()) < partial.values.numel()
    torch.testing.assert_close(
        partial.values[finished], full.values[finished], atol=1e-6, rtol=1e-5
    )
    torch.testing.assert_close(partial.clean, full.clean)
    clean.assert_clean()


def test_the_model_is_usable_after_an_interrupt(llama, full):
    model, tok = llama
    with (
        Passes(model.model.layers[-1], on_call(BASELINE, error=KeyboardInterrupt)),
        pytest.raises(nv.SweepInterrupted),
    ):
        nv.run(SPEC, model=model, tokenizer=tok, max_batch=8)
    again = nv.run(SPEC, model=model, tokenizer=tok, max_batch=8)
    torch.testing.assert_close(again.values, full.values, atol=0, rtol=0)


def test_progress_counts_cells_not_noise_samples(llama, full):
    model, tok = llama
    seen = []
    nv.run(
        SPEC,
        model=model,
        tokenizer=tok,
        max_batch=8,
        progress=lambda done, total: seen.append((done, total)),
    )
    cells = full.values.numel()  # 2 examples × 2 layers × 3 positions; each has 2 samples
    assert cells == 12
    assert {total for _, total in seen} == {cells}
    assert seen[-1] == (cells, cells) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_the_progress_bar_counts_cells(llama, capsys):
    model, tok = llama
    nv.run(SPEC, model=model, tokenizer=tok, max_batch=2)  # 24 rows > 4 × 2: a bar
    shown = capsys.readouterr().err.replace("\r", "\n")
    assert "/12 " in shown and "/24" not in shown
    assert "2 noise samples each" in shown


def test_an_interrupted_attribution_estimate_is_a_sweep_interrupted(llama):
    model, tok = llama
    clean = Snapshot(model)
    spec = SPEC.replace(
        'corrupt: noise 3σ on "city" samples=2',
        'source: ["a b c d e f g h i j k", "a b c d e f g h i"]',
    )
    spec = spec.replace("restore:", "patch:").replace(" normalized", "") + "estimate: attribution\n"
    with (
        Passes(model.model.norm, on_call(2, error=KeyboardInterrupt)),
        pytest.raises(nv.SweepInterrupted) as info,
    ):
        nv.run(spec, model=model, tokenizer=tok)
    assert bool(info.value.result.values.isnan().all())
    clean.assert_clean()


@pytest.mark.parametrize("how", ["hook", "signal"])
def test_an_interrupt_while_attention_weights_are_patched_restores_the_attention(how):
    model, tok = nv.models.tiny("llama")
    model.config._attn_implementation = "sdpa"  # the user's setting; the run switches it
    clean = Snapshot(model)
    spec = SPEC.replace(
        "restore: block_output layer=* pos=-3..-1", "zero: attention_weight layer=* pos=-1"
    )
    seen = []

    def attention_switched(call, rows):
        seen.append(model.config._attn_implementation)
        if call == 4:  # the grid's first pass (source 1, baseline 2 and 3)
            return "SIGINT" if how == "signal" else KeyboardInterrupt()
        return None

    with Passes(model.model.norm, attention_switched), pytest.raises(nv.SweepInterrupted):
        nv.run(spec.replace(" normalized", ""), model=model, tokenizer=tok, max_batch=2)
    assert seen[-1] != "sdpa"  # stopped while the run's eager attention was in place
    clean.assert_clean()
    assert model.config._attn_implementation == "sdpa"
