"""Packed passes on the edge cases: prompts of different lengths, sites inside the block, rows
with units at several layers, user functions, zero, steering, mean ablation, normalised and KL
metrics, families the suffix tests leave out, sliding windows shorter than the prompt, a read
before the last token, bfloat16 models, short lanes, one row a pass, a stop mid-grid, and
out-of-memory at one row's tokens. Each gives the numbers of full forward passes (and of the
rows-per-entry path, and its top tokens), and the model comes out clean. Edits moved to the
next block's input, and edits at one site, apply in the model's and the statements' order."""

import pytest
import torch
from faults import OUT_OF_MEMORY, Passes, Snapshot, assert_keeps_finished, on_call

import nbvene as nv
from nbvene.engine import packed
from nbvene.engine.run import Sweep, execute
from nbvene.engine.tail import Tail
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


@pytest.fixture
def entry_rows():
    """Today's main path: every row its own batch entry, no packed passes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sweep, "packing", property(lambda self: False))
        yield


def values(spec, model, tok, **options):
    return nv.run(spec, model=model, tokenizer=tok, namespace=NAMESPACE, **options)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("case", ["lengths, noise", "two statements at two layers", "kl"])
def test_bfloat16_packed_equals_full_and_rows_per_entry(case, attention, request):
    """Within bfloat16's rounding of the largest value (SDPA's kernels round otherwise on a
    packed pass's shapes; eager attention gives the same bits)."""
    model, tok = nv.models.tiny("llama", layers=3)
    model.to(torch.bfloat16)
    model.config._attn_implementation = attention
    spec = CASES[case]
    plan = plan_of(spec, model, tok)
    assert Sweep(plan, start_at_layer=True).packing
    full = execute(plan, start_at_layer=False).values
    tolerance = {"atol": 1e-2 * float(full.abs().max()), "rtol": 1e-2}
    packed = execute(plan, max_batch=4).values
    torch.testing.assert_close(packed, full, **tolerance)
    request.getfixturevalue("entry_rows")
    entry = execute(plan, max_batch=4).values
    torch.testing.assert_close(packed, entry, **tolerance)


@pytest.mark.parametrize("case", ["lengths, noise", "two statements at two layers", "steering"])
def test_top_tokens_of_a_packed_sweep_equal_the_rows_per_entry_ones(llama, case, request):
    """Also where a cell's noise samples fall in two passes (max_batch=2 of 3 samples)."""
    model, tok = llama
    packed = [values(CASES[case], model, tok, max_batch=n) for n in (1, 2, 64)]
    request.getfixturevalue("entry_rows")
    entry = values(CASES[case], model, tok, max_batch=3)
    for res in packed:
        assert res.top.keys() == entry.top.keys()
        for key in res.top:
            torch.testing.assert_close(res.top[key], entry.top[key], atol=1e-5, rtol=1e-5)
        assert res.baseline_top.keys() == entry.baseline_top.keys()
        for key in res.baseline_top:
            torch.testing.assert_close(
                res.baseline_top[key], entry.baseline_top[key], atol=1e-5, rtol=1e-5
            )


def test_one_row_a_pass_and_a_stop_mid_grid(llama):
    model, tok = llama
    clean = Snapshot(model)
    spec = CASES["lengths, noise"]
    full = values(spec, model, tok, max_batch=64)
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 40

    with pytest.raises(nv.SweepInterrupted) as info:
        values(spec, model, tok, max_batch=1, stop=stop)
    assert_keeps_finished(info.value.result, full)
    clean.assert_clean()


def test_an_interrupt_in_a_one_row_packed_pass(llama):
    model, tok = llama
    clean = Snapshot(model)
    spec = CASES["two statements at two layers"]
    full = values(spec, model, tok, max_batch=64)
    with (
        Passes(model.model.norm, on_call(6, error=KeyboardInterrupt)),
        pytest.raises(nv.SweepInterrupted) as info,
    ):
        values(spec, model, tok, max_batch=1)
    assert_keeps_finished(info.value.result, full)
    clean.assert_clean()


ORDER = {
    "zero: block_input after": """
        zero:   block_input layer=1 pos=-1
        patch:  block_output layer=0 pos=-1""",
    "zero: block_input before": """
        patch:  block_output layer=0 pos=-1
        zero:   block_input layer=1 pos=-1""",
    "add: block_input, block_output swept": """
        add:    block_input layer=2 pos=-1 by {steer}
        patch:  block_output layer=* pos=-1""",
    "zero: resid_mid after": """
        zero:   resid_mid layer=1 pos=-1
        patch:  block_output layer=0 pos=-1""",
    "add then patch at one block output": """
        add:    block_output layer=* pos=-1 by {steer}
        patch:  block_output layer=* pos=-1""",
}


@pytest.mark.parametrize("case", ORDER)
def test_an_edit_moved_to_the_next_block_comes_before_its_own(llama, case):
    """A row patched at block l's output runs from block l+1, its edit at that block's input:
    there it comes first, as block l's output came before block l+1's input edits (and before
    what `resid_mid` reads of the block's input), whatever the statements' order."""
    model, tok = llama
    spec = f'base:   ["{LONG}", "{SHORT}"]\nsource: "{SOURCE}"\n{ORDER[case]}\n'
    assert_packed_equals_full(model, tok, spec + 'metric: logprob(" Paris")', batches=(1, 64))


def test_edits_at_one_site_apply_in_the_statements_order_in_any_pass(llama):
    """Two statements at one site (the swept zero meets the fixed patch at layer 2): the zero,
    written first, applies first in every pass, whichever rows share it (a pass's edits were
    registered in the order its rows first used them: the patch first where the zero's row at
    layer 2 came after a row that has the patch only)."""
    model, tok = llama
    spec = f"""
        base:   ["{LONG}", "{SHORT}"]
        source: "{SOURCE}"
        zero:   q layer=* head=0 pos=-1
        patch:  q layer=2 head=0 pos=-1 via {{halfway}}
        metric: logprob(" Paris")"""
    plan = plan_of(spec, model, tok)
    alone = execute(plan, max_batch=1, start_at_layer=False).values
    together = execute(plan, max_batch=64, start_at_layer=False).values
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-6)
    assert_packed_equals_full(model, tok, spec)


@pytest.mark.parametrize("lane", [1, 2, 5])
def test_short_lanes_hold_a_row_each_or_a_few(llama, lane):
    """Lanes shorter than most rows (a row longer than a lane gets a lane of its own length):
    many lanes of one start and one run, the same numbers."""
    model, tok = llama
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(packed, "LANE_TOKENS", lane)
        for case in ("lengths, noise", "two statements at two layers"):
            assert_packed_equals_full(model, tok, CASES[case], batches=(2, 64))


def failing_packed_passes(fail):
    """Tail.packed raising an out-of-memory where `fail(call)` says; each call's rows."""
    rows: list[int] = []
    packed = Tail.packed

    def run(tail, layout, read):
        rows.append(len(layout.lengths))
        assert len(rows) < 50, "the retries do not end"
        if fail(len(rows)):
            raise OUT_OF_MEMORY["cuda-message"]()
        return packed(tail, layout, read)

    return run, rows


def test_an_out_of_memory_at_one_row_of_tokens_retries_fewer_rows(llama):
    """With max_batch=1, a pass holds the rows that fit one prompt's tokens (here one token
    each): after an out-of-memory it holds half as many, down to one."""
    model, tok = llama
    clean = Snapshot(model)
    spec = CASES["lengths, last token"]
    full = execute(plan_of(spec, model, tok), start_at_layer=False).values
    run, rows = failing_packed_passes(lambda call: call == 1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Tail, "packed", run)
        got = execute(plan_of(spec, model, tok), max_batch=1).values
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    assert rows[0] > 1 and rows[1] == rows[0] // 2
    clean.assert_clean()


def test_an_out_of_memory_in_every_packed_pass_gives_up_at_one_row(llama):
    model, tok = llama
    clean = Snapshot(model)
    run, rows = failing_packed_passes(lambda call: True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Tail, "packed", run)
        with pytest.raises(nv.NbveneError, match="one row per forward pass, in the grid"):
            execute(plan_of(CASES["lengths, last token"], model, tok), max_batch=1)
    assert rows[0] > 1 and rows[-1] == 1
    clean.assert_clean()


@pytest.mark.parametrize("other", ["block_input", "attention_output"])
def test_resid_mid_sums_the_edited_block_input_and_attention_output(llama, other):
    """`resid_mid` is the block's input plus the attention's output: edits of either come
    before it, as in the model, whichever statement comes first (zeroed, it is zero)."""
    model, tok = llama
    zero = "zero:   resid_mid layer=1 pos=-1"
    add = f"add:    {other} layer=1 pos=-1 by {{steer}}"
    results = []
    for lines in ([zero], [zero, add], [add, zero]):
        spec = "\n".join([f'base:   ["{LONG}", "{SHORT}"]', *lines, 'metric: logprob(" Paris")'])
        plan = plan_of(spec, model, tok)
        results.append(execute(plan, start_at_layer=False).values)
        torch.testing.assert_close(execute(plan).values, results[-1], atol=1e-5, rtol=1e-5)
    for got in results[1:]:
        torch.testing.assert_close(got, results[0], atol=1e-6, rtol=1e-6)
