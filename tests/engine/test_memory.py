"""max_batch, max_memory and out-of-memory halving govern every pass of a sweep (source,
baseline, `mean:`, grid): an out-of-memory, in any form a backend raises it, is retried at
half the rows, and with one row left it is one clear NbveneError; the model comes out clean."""

from types import SimpleNamespace

import pytest
import torch
from faults import OUT_OF_MEMORY, Passes, Snapshot, on_call

import nbvene as nv
from nbvene.engine import memory
from nbvene.engine.memory import Budget, is_out_of_memory, row_bytes, rows_within

PROMPTS = [
    "The Colosseum is located in the city of",
    "The Eiffel Tower is in the city of",
    "Big Ben is in the city of",
    "The Louvre is a museum in the city of",
]
# 4 examples × 2 layers × 3 positions × 2 noise samples = 48 rows: with max_batch=16 the passes
# are the source run (4 rows) and the baseline (8 rows) in one pass, and the grid (3 passes of
# 16 rows)
TRACE = f"""
base:    {PROMPTS}
corrupt: noise 3σ on "city" samples=2
restore: block_output layer=* pos=-3..-1
metric:  p(" Paris")
""".replace("'", '"')
MEAN = f"""
base: "{PROMPTS[0]}"
mean: block_output layer=* pos=-1 over={{others}}
metric: p(" Paris")
"""
PASSES = [12, 16, 16, 16]


@pytest.fixture(scope="module")
def llama(rows_per_entry):
    return nv.models.tiny("llama")


@pytest.fixture(scope="module")
def unconstrained(llama):
    model, tok = llama
    return nv.run(TRACE, model=model, tokenizer=tok, max_batch=16)


def last_block(model):
    """Where faults are injected: the final norm, which every pass runs (rows that start at
    their layer too), after the blocks whose inputs the baseline records."""
    return model.model.norm


def test_the_passes_are_as_counted(llama):
    model, tok = llama
    with Passes(last_block(model)) as passes:
        nv.run(TRACE, model=model, tokenizer=tok, max_batch=16)
    assert passes.rows == PASSES


@pytest.mark.parametrize("form", OUT_OF_MEMORY)
@pytest.mark.parametrize("at", [1, 3, len(PASSES)], ids=["1st", "3rd", "last"])
def test_out_of_memory_in_any_pass_halves_it_and_changes_nothing(llama, unconstrained, form, at):
    model, tok = llama
    clean = Snapshot(model)
    with Passes(last_block(model), on_call(at, error=OUT_OF_MEMORY[form])) as passes:
        res = nv.run(TRACE, model=model, tokenizer=tok, max_batch=16)
    failed = PASSES[at - 1]
    assert passes.rows[: at - 1] == PASSES[: at - 1]
    assert passes.rows[at - 1] == failed  # the pass that ran out of memory...
    if at == 1:  # the source run and the baseline's one pass: they run apart, at half its rows
        assert passes.rows[at : at + 3] == [4, 6, 2]
    else:
        assert passes.rows[at] == failed // 2  # ...ran again at half the rows
    assert max(passes.rows[at:]) <= failed // 2  # and later passes keep the halved size
    assert sum(passes.rows) == sum(PASSES) + failed  # every row ran once, besides the failure
    torch.testing.assert_close(res.values, unconstrained.values, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(res.clean, unconstrained.clean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(res.corrupted, unconstrained.corrupted, atol=1e-6, rtol=1e-5)
    clean.assert_clean()


@pytest.mark.parametrize("form", OUT_OF_MEMORY)
def test_out_of_memory_with_one_row_is_one_clear_error(llama, form):
    model, tok = llama
    clean = Snapshot(model)
    with (
        Passes(last_block(model), lambda call, rows: OUT_OF_MEMORY[form]()) as passes,
        pytest.raises(nv.NbveneError) as info,
    ):
        nv.run(TRACE, model=model, tokenizer=tok, max_batch=16)
    # the source and the baseline in one pass, then the source alone, halved down to one row,
    # then given up
    assert passes.rows == [12, 4, 2, 1]
    assert "out of memory with one row per forward pass, in the source run" in str(info.value)
    assert "shorten the prompts" in info.value.hint
    clean.assert_clean()


def test_an_error_from_the_forward_pass_is_not_taken_for_out_of_memory(llama):
    model, tok = llama
    clean = Snapshot(model)
    boom = on_call(3, error=lambda: RuntimeError("boom: an index out of range"))
    with Passes(last_block(model), boom) as passes, pytest.raises(RuntimeError, match="boom"):
        nv.run(TRACE, model=model, tokenizer=tok, max_batch=16)
    assert passes.rows == PASSES[:3]  # not retried
    clean.assert_clean()


@pytest.mark.parametrize("spec", [TRACE, MEAN], ids=["source-baseline-grid", "mean"])
def test_max_batch_one_runs_every_pass_one_row_at_a_time(llama, spec):
    model, tok = llama
    others = {"others": PROMPTS[1:]}
    blocks = model.model.layers
    spies = [Passes(block) for block in blocks]
    try:
        res = nv.run(spec, model=model, tokenizer=tok, namespace=others, max_batch=1)
    finally:
        for spy in spies:
            spy.__exit__()
    full = nv.run(spec, model=model, tokenizer=tok, namespace=others)
    rows = [r for spy in spies for r in spy.rows]
    assert rows and set(rows) == {1}
    # the mean run of 3 prompts, the baseline and the cells: all one row a pass
    assert len(spies[0].rows) >= (3 if spec == MEAN else len(PROMPTS) * 3)
    torch.testing.assert_close(res.values, full.values, atol=1e-6, rtol=1e-5)


def test_max_memory_caps_every_pass(llama):
    model, tok = llama
    plan = nv.plan(TRACE, model=model, tokenizer=tok)
    assert rows_within(plan, 3 * row_bytes(plan)) == 3
    with Passes(last_block(model)) as passes:
        nv.run(TRACE, model=model, tokenizer=tok, max_memory=3 * row_bytes(plan))
    assert max(passes.rows) == 3 and len(passes.rows) == 2 + 3 + 16  # 4, 8 and 48 rows by 3


def test_the_estimate_counts_the_longest_prompt_of_any_pass(llama):
    model, tok = llama
    short = nv.plan(
        f'base: "{PROMPTS[2]}"\nzero: block_output layer=0 pos=-1\nmetric: p(" a")',
        model=model,
        tokenizer=tok,
    )
    with_long_source = nv.plan(
        f'base: "{PROMPTS[2]}"\nsource: "{PROMPTS[3]} and more words here"\n'
        'patch: block_output layer=0 pos=-1\nmetric: p(" a")',
        model=model,
        tokenizer=tok,
    )
    assert row_bytes(with_long_source) > row_bytes(short)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB, other allocations: 0)"),
        RuntimeError("XPU out of memory. Tried to allocate 1.00 GiB"),
        RuntimeError("HIP out of memory. Tried to allocate 1.00 GiB"),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        MemoryError(),
    ],
)
def test_out_of_memory_is_recognised_in_every_form(error):
    assert is_out_of_memory(error)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("shape mismatch"), ValueError("out of memory"), KeyboardInterrupt()],
)
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)


def test_budget_halves_a_chunk_and_keeps_the_size():
    budget, seen = Budget(8), []

    def run(chunk):
        seen.append(len(chunk))
        if len(chunk) > 3:
            raise RuntimeError("CUDA out of memory")
        return sum(chunk)

    out = list(budget.chunks(range(10), run, "test"))
    assert seen == [8, 4, 2, 2, 2, 2, 2]
    assert [c for c, _ in out] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert budget.size == 2 and budget.halvings == 2


def test_budget_run_starts_a_whole_pass_over():
    budget, sizes = Budget(8), []

    def run(size):
        sizes.append(size)
        if size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return size

    assert budget.run(run, "test") == 2 and sizes == [8, 4, 2]


@pytest.mark.parametrize("form", OUT_OF_MEMORY)
def test_attribution_runs_its_base_pass_in_chunks_and_halves_it(llama, form):
    model, tok = llama
    spec = TRACE.replace("restore:", "patch:").replace("corrupt:", "# corrupt:")
    spec = spec.replace("# corrupt:", f"source: {PROMPTS[::-1]}\n# corrupt:".replace("'", '"'))
    spec += "estimate: attribution\n"
    whole = nv.run(spec, model=model, tokenizer=tok)
    clean = Snapshot(model)
    with Passes(last_block(model)) as one_a_pass:
        ones = nv.run(spec, model=model, tokenizer=tok, max_batch=1)
    assert set(one_a_pass.rows) == {1} and len(one_a_pass.rows) == 2 * len(PROMPTS)
    with Passes(last_block(model), on_call(2, error=OUT_OF_MEMORY[form])) as p:
        halved = nv.run(spec, model=model, tokenizer=tok, max_batch=4)
    assert p.rows == [4, 4, 2, 2]  # the source run, then the base pass: failed, in halves
    for res in (ones, halved):
        torch.testing.assert_close(res.values, whole.values, atol=1e-6, rtol=1e-5)
    clean.assert_clean()


def test_a_real_cpu_allocation_failure_is_halved(llama, unconstrained):
    model, tok = llama

    def allocate_too_much(call, rows):
        if rows > 4:
            torch.empty(2**60, dtype=torch.uint8)  # the CPU allocator's own RuntimeError

    with Passes(last_block(model), allocate_too_much) as passes:
        res = nv.run(TRACE, model=model, tokenizer=tok, max_batch=16)
    # the source and the baseline's one pass halved (to 6), the source alone, the baseline
    # halved again; the grid kept 3
    assert passes.rows == [12, 4, 6, 3, 3, 2] + [3] * 16
    torch.testing.assert_close(res.values, unconstrained.values, atol=1e-6, rtol=1e-5)


def test_rows_start_at_their_layer_only_if_what_that_keeps_fits_max_memory(llama):
    """Starting at a layer keeps the baseline's block inputs for every (example, sample): with
    30 samples they outgrow a small budget, and the rows run full forward passes instead."""
    model, tok = llama
    many = TRACE.replace("samples=2", "samples=30")  # 120 corrupted runs, 720 rows
    plan = nv.plan(many, model=model, tokenizer=tok)
    kept = 1 * len(PROMPTS) * 30 * max(len(p) for p in plan.base) * 64 * 4  # layer 1's inputs
    first = model.model.layers[0]
    with Passes(first) as roomy:
        wide = nv.run(many, model=model, tokenizer=tok, max_memory=2 * kept)
    with Passes(first) as tight:
        narrow = nv.run(many, model=model, tokenizer=tok, max_memory=kept // 2)
    # block 0: the source run (4) and the baseline (120), then the grid's rows patched at layer
    # 0 only (360), or all 720 when nothing is kept to start from
    assert sum(roomy.rows) == 4 + 120 + 360
    assert sum(tight.rows) == 4 + 120 + 720
    torch.testing.assert_close(narrow.values, wide.values, atol=1e-6, rtol=1e-5)


# --- max_memory="auto": sized from the free memory of the model's devices ----------------------


def fake_free(monkeypatch, free: dict[str, int]) -> None:
    """The model's devices and their free memory, as `max_memory="auto"` reads them."""
    monkeypatch.setattr(memory, "model_devices", lambda model: [torch.device(d) for d in free])
    monkeypatch.setattr(memory, "free_bytes", lambda device: free[str(device)])


def test_auto_takes_a_share_of_the_free_memory(llama, monkeypatch):
    model, tok = llama
    plan = nv.plan(TRACE, model=model, tokenizer=tok)
    fake_free(monkeypatch, {"cpu": 10 * row_bytes(plan)})
    assert memory.limit_bytes(model, "auto") == int(10 * row_bytes(plan) * memory.HEADROOM)
    assert rows_within(plan, "auto") == int(10 * memory.HEADROOM)
    assert rows_within(plan, " AUTO ") == int(10 * memory.HEADROOM)


def test_auto_sizes_from_the_tightest_device(llama, monkeypatch):
    model, tok = llama
    plan = nv.plan(TRACE, model=model, tokenizer=tok)
    fake_free(monkeypatch, {"cuda:0": 100 * row_bytes(plan), "cuda:1": 8 * row_bytes(plan)})
    free = memory.free_memory(model)
    assert str(free.device) == "cuda:1" and free.bytes == 8 * row_bytes(plan)
    assert rows_within(plan, "auto") == 4


def test_auto_caps_every_pass_and_changes_nothing(llama, unconstrained, monkeypatch):
    model, tok = llama
    plan = nv.plan(TRACE, model=model, tokenizer=tok)
    fake_free(monkeypatch, {"cpu": 6 * row_bytes(plan)})
    with Passes(last_block(model)) as passes:
        res = nv.run(TRACE, model=model, tokenizer=tok, max_memory="auto", max_batch=16)
    assert max(passes.rows) == 3 and len(passes.rows) == 2 + 3 + 16  # 4, 8 and 48 rows by 3
    torch.testing.assert_close(res.values, unconstrained.values, atol=1e-6, rtol=1e-5)


def test_a_nearly_full_device_still_completes_the_sweep(llama, unconstrained, monkeypatch):
    """The estimate says 16 rows fit, but the device has room for 4 only: every pass larger than
    that runs out of memory and is halved until it fits, and the values are the same."""
    model, tok = llama
    plan = nv.plan(TRACE, model=model, tokenizer=tok)
    fake_free(monkeypatch, {"cpu": 32 * row_bytes(plan)})
    assert rows_within(plan, "auto") == 16
    full = OUT_OF_MEMORY["OutOfMemoryError"]
    with Passes(last_block(model), lambda call, rows: full() if rows > 4 else None) as passes:
        res = nv.run(TRACE, model=model, tokenizer=tok, max_memory="auto")
    # the source and the baseline (12 rows: out of memory, halved to 6), the source alone (4),
    # the baseline (6: out of memory, again at 3), then the grid at 3
    assert passes.rows[:4] == [12, 4, 6, 3] and max(passes.rows[4:]) == 3
    torch.testing.assert_close(res.values, unconstrained.values, atol=1e-6, rtol=1e-5)


def test_the_dry_run_says_what_auto_chose(llama, monkeypatch):
    model, tok = llama
    plan = nv.plan(TRACE, model=model, tokenizer=tok)
    fake_free(monkeypatch, {"cpu": 3_100_000_000})
    rows = int(3_100_000_000 * memory.HEADROOM) // row_bytes(plan)
    text = plan.describe(max_batch=10**9, max_memory="auto")
    assert f"max_memory=auto: 3.1 GB free on cpu → {rows} rows a pass" in text
    assert f"({min(rows, 48)} rows)" in text  # the activation estimate counts those rows
    capped = plan.describe(max_batch=16, max_memory="auto")
    assert "max_memory=auto: 3.1 GB free on cpu → 16 rows a pass (max_batch)" in capped
    assert "max_memory=auto" not in plan.describe(max_memory="2GB")


def test_auto_with_too_little_free_memory_is_one_clear_error(llama, monkeypatch):
    model, tok = llama
    plan = nv.plan(TRACE, model=model, tokenizer=tok)
    fake_free(monkeypatch, {"cpu": row_bytes(plan)})
    with pytest.raises(nv.NbveneError, match="less than one row needs") as error:
        nv.run(TRACE, model=model, tokenizer=tok, max_memory="auto")
    assert "free on cpu, 50% of it for activations" in str(error.value)


def test_auto_applies_to_vectors_generation_and_training(llama, monkeypatch):
    model, tok = llama
    fake_free(monkeypatch, {"cpu": 10**12})
    kwargs = dict(model=model, tokenizer=tok)
    vector = nv.vector(PROMPTS[:2], PROMPTS[2:], layer=1, max_memory="auto", **kwargs)
    assert torch.equal(vector.values, nv.vector(PROMPTS[:2], PROMPTS[2:], layer=1, **kwargs).values)
    steer = f'steer: block_output layer=1 by {{v}} * 4\ngenerate: "{PROMPTS[0]}" max_new_tokens=3'
    steered = nv.generate(steer, namespace={"v": vector}, max_memory="auto", **kwargs)
    assert steered.steered == nv.generate(steer, namespace={"v": vector}, **kwargs).steered
    fake_free(monkeypatch, {"cpu": 1})
    with pytest.raises(nv.NbveneError, match="less than one row needs"):
        nv.vector(PROMPTS[:2], PROMPTS[2:], layer=1, max_memory="auto", **kwargs)
    with pytest.raises(nv.NbveneError, match="less than one row needs"):
        nv.train(TRAIN, namespace=TRAIN_DATA, max_memory="auto", progress=False, **kwargs)


TRAIN = "base: {base}\nsource: {source}\npatch: block_output layer=0 pos=-1 via rotated(k=1)\n"
TRAIN += "label: {label}"
TRAIN_DATA = {"base": PROMPTS * 2, "source": PROMPTS[::-1] * 2, "label": [5, 7, 9, 11] * 2}


def test_training_steps_in_parts_that_fit_max_memory(llama):
    model, tok = llama
    same_prompts = (
        'base: {base}\nsource: {source}\npatch: block_output layer=0 pos=-1\nmetric: p(" a")'
    )
    plan = nv.plan(same_prompts, model=model, tokenizer=tok, namespace=TRAIN_DATA)
    options = dict(model=model, tokenizer=tok, namespace=TRAIN_DATA, progress=False, epochs=2)
    options.update(held_out=None, batch_size=8, lr=1e-2)
    whole = nv.train(TRAIN, **options)
    with Passes(last_block(model)) as passes:
        parts = nv.train(TRAIN, max_memory=3 * memory.row_bytes(plan, grad=True), **options)
    assert max(passes.rows) <= 3
    for a, b in zip(parts.history, whole.history, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5


def test_the_free_memory_of_each_kind_of_device(monkeypatch):
    """CUDA: what the driver reports free plus what torch's allocator holds unused; the CPU:
    MemAvailable."""
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "mem_get_info", lambda device: (3 * 2**30, 80 * 2**30))
    monkeypatch.setattr(cuda, "memory_reserved", lambda device: 2**30)
    monkeypatch.setattr(cuda, "memory_allocated", lambda device: 2**29)
    assert memory.free_bytes(torch.device("cuda", 1)) == 3 * 2**30 + 2**29
    assert 0 < memory.free_bytes(torch.device("cpu")) == memory.available_ram()


def test_offloaded_weights_count_the_device_they_run_on():
    """accelerate puts offloaded weights on `meta` and runs them on its hook's device."""
    layer = torch.nn.Linear(2, 2, device="meta")
    layer._hf_hook = SimpleNamespace(execution_device=0)
    model = torch.nn.Sequential(layer, torch.nn.Linear(2, 2))
    assert memory.model_devices(model) == [torch.device("cpu"), torch.device("cuda", 0)]
    assert memory.model_devices(torch.nn.Linear(2, 2, device="meta")) == [torch.device("cpu")]
