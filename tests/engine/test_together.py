"""The source run and the corrupted baseline in one forward pass (issue 18): the same values,
baselines and top tokens as their separate passes, on tiny llama and gpt2, with noise samples,
several examples, a source shorter than the base; separate passes where one pass cannot stand
for them (a longer source, attention weights, sources patched `into`, too many rows). A cell's
top tokens, found block by block: the same as softmax, then top-k."""

import itertools

import pytest
import torch
from faults import Passes

import nbvene as nv
from nbvene.engine.memory import Budget
from nbvene.engine.run import Sweep, Top, cell_logits, execute, top_k

COLOSSEUM = "The Colosseum is located in the city of"
EIFFEL = "The Eiffel Tower is located in the city of"

TOGETHER = {
    "noise samples": f"""
        base:    "{EIFFEL}"
        corrupt: noise 3σ on "The Eiffel Tower" samples=3
        restore: block_output layer=* pos=*
        metric:  p(" Paris")""",
    "heads at the last position": f"""
        base:   "{COLOSSEUM}"
        source: "{EIFFEL}"
        patch:  z layer=* head=* pos=-1
        metric: logit_diff(" Paris", " Rome") normalized""",
    "several examples": f"""
        base:   ["{COLOSSEUM}", "{EIFFEL}"]
        source: ["{EIFFEL}", "{COLOSSEUM}"]
        patch:  block_output layer=* pos=-2..-1
        metric: logit_diff(" Paris", " Rome")""",
    "several examples, one source": f"""
        base:   ["{COLOSSEUM}", "The Eiffel Tower is in"]
        source: "{EIFFEL}"
        patch:  attention_output layer=* pos=-1
        metric: kl""",
    "a shorter source": f"""
        base:   "{COLOSSEUM}"
        source: "Paris is in the city of"
        patch:  mlp_output layer=* pos=-1
        metric: logit_diff(" Paris", " Rome")""",
    "several examples under noise": f"""
        base:    ["{EIFFEL}", "{COLOSSEUM}"]
        corrupt: noise 3σ on "The" samples=2 seed=1
        restore: block_output layer=* pos=-3..-1
        metric:  logprob(" Paris")""",
}

APART = {
    "a longer source": f"""
        base:   "The Colosseum is in"
        source: "{EIFFEL}"
        patch:  block_output layer=* pos=-1
        metric: p(" Paris")""",
    "attention weights": f"""
        base:   "{COLOSSEUM}"
        source: "{EIFFEL}"
        patch:  attention_weight layer=* pos=-1 head=0
        metric: p(" Paris")""",
    "too many rows for one pass": f"""
        base:    "{EIFFEL}"
        corrupt: noise 3σ on "The Eiffel Tower" samples=8
        restore: block_output layer=* pos=-1
        metric:  p(" Paris")""",
}


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny(request):
    return nv.models.tiny(request.param, layers=3)


def separate(monkeypatch, plan, **options):
    """The plan run with its source and baseline in their own passes, as before issue 18."""
    with monkeypatch.context() as patched:
        patched.setattr(Sweep, "together", lambda self: False)
        return execute(plan, **options)


def passes_before_grid(model, plan, max_batch: int = 64) -> list[int]:
    """The rows of each whole-model forward pass that runs before the grid."""
    sweep = Sweep(plan, start_at_layer=True, budget=Budget(max_batch))
    with Passes(model) as passes, torch.no_grad():
        sweep.before_grid()
    return passes.rows


def assert_same(got, expected):
    torch.testing.assert_close(got.values, expected.values, atol=1e-5, rtol=1e-5)
    for baseline in ("clean", "corrupted"):
        torch.testing.assert_close(
            getattr(got, baseline), getattr(expected, baseline), atol=1e-5, rtol=1e-5
        )
    assert torch.equal(got.top["ids"], expected.top["ids"])
    torch.testing.assert_close(got.top["probs"], expected.top["probs"], atol=1e-6, rtol=1e-5)
    for run, top in expected.baseline_top.items():
        assert torch.equal(got.baseline_top[run]["ids"], top["ids"])
        torch.testing.assert_close(got.baseline_top[run]["probs"], top["probs"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("sweep", TOGETHER)
def test_one_pass_gives_the_values_of_the_separate_passes(tiny, sweep, monkeypatch):
    model, tok = tiny
    plan = nv.plan(TOGETHER[sweep], model=model, tokenizer=tok)
    assert Sweep(plan, start_at_layer=True).together()
    expected = separate(monkeypatch, plan, start_at_layer=False)
    for start_at_layer in (True, False):
        assert_same(execute(plan, start_at_layer=start_at_layer), expected)
    assert_same(separate(monkeypatch, plan), expected)


@pytest.mark.parametrize("sweep", TOGETHER)
def test_the_source_and_the_baseline_run_as_one_pass(tiny, sweep):
    model, tok = tiny
    plan = nv.plan(TOGETHER[sweep], model=model, tokenizer=tok)
    base_rows = len(plan.base) * (plan.corrupt.samples if plan.corrupt else 1)
    assert passes_before_grid(model, plan) == [len(plan.source) + base_rows]


@pytest.mark.parametrize("sweep", APART)
def test_what_one_pass_cannot_hold_runs_apart(tiny, sweep, monkeypatch):
    model, tok = tiny
    plan = nv.plan(APART[sweep], model=model, tokenizer=tok)
    base_rows = len(plan.base) * (plan.corrupt.samples if plan.corrupt else 1)
    assert not Sweep(plan, start_at_layer=True, budget=Budget(8)).together()
    assert passes_before_grid(model, plan, max_batch=8) == [len(plan.source), base_rows]
    got = execute(plan, max_batch=8)
    torch.testing.assert_close(
        got.values, separate(monkeypatch, plan, max_batch=8).values, atol=0, rtol=0
    )


def test_the_clean_run_in_the_joint_pass_is_the_models_own(tiny):
    """The source's logits out of the joint pass (right-padded to the base's width) are those
    of a plain forward pass of the source alone."""
    model, tok = tiny
    plan = nv.plan(TOGETHER["a shorter source"], model=model, tokenizer=tok)
    assert len(plan.source[0]) < len(plan.base[0])
    sweep = Sweep(plan, start_at_layer=True)
    with torch.no_grad():
        clean_logits, _ = sweep.before_grid()
    assert sweep.offset == 1
    with torch.no_grad():
        ids = torch.tensor([plan.source[0].ids])
        expected = model(input_ids=ids).logits[:, -1]
    torch.testing.assert_close(clean_logits, expected, atol=1e-5, rtol=1e-5)


def test_serial_sources_run_apart(tiny):
    model, tok = tiny
    ids = [tok(t).input_ids for t in (COLOSSEUM, EIFFEL, "The Louvre is located in the city of")]
    n = min(len(i) for i in ids)
    base, s1, s2 = (torch.tensor(i[:n]) for i in ids)
    spec = """
        base: {base}
        source s1: {s1}
        source s2: {s2}
        patch: block_output layer=0 pos=-1 from s1 into s2
        patch: block_output layer=1 pos=-1 from s2
        metric: p(" Paris")
        """
    namespace = {"base": base, "s1": s1, "s2": s2}
    plan = nv.plan(spec, model=model, tokenizer=tok, namespace=namespace)
    assert not Sweep(plan, start_at_layer=True).together()
    assert passes_before_grid(model, plan)[:2] == [1, 1]  # s2, the clean run: the baseline


def test_a_heatmap_click_shows_the_joint_pass_logits(tiny, monkeypatch):
    """`cell_logits` (a click re-runs a cell) reads the corrupted logits past the source's rows."""
    model, tok = tiny
    plan = nv.plan(TOGETHER["several examples under noise"], model=model, tokenizer=tok)
    rows = [len(plan.rows) - 2, len(plan.rows) - 1]  # the last cell: example 1's two samples
    got = cell_logits(plan, rows)
    with monkeypatch.context() as patched:
        patched.setattr(Sweep, "together", lambda self: False)
        expected = cell_logits(plan, rows)
    for name in ("patched", "corrupted", "clean", "metric"):
        torch.testing.assert_close(
            getattr(got, name), getattr(expected, name), atol=1e-5, rtol=1e-5
        )


def test_out_of_memory_in_the_joint_pass_runs_the_passes_apart(tiny):
    model, tok = tiny
    plan = nv.plan(TOGETHER["noise samples"], model=model, tokenizer=tok)
    expected = execute(plan, max_batch=4, start_at_layer=False)

    def once(call, rows):
        if call == 1:
            return torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return None

    with Passes(model, once) as passes:
        got = execute(plan, max_batch=4, start_at_layer=False)
    assert passes.rows[:4] == [4, 1, 2, 1]  # the joint pass, then apart at half its rows
    assert_same(got, expected)


# --- top-k ------------------------------------------------------------------------------------


def direct(logits: torch.Tensor, samples: int, k: int = 5):
    """Softmax, the mean over each cell's samples, then top-k: what a click computes."""
    probs = torch.softmax(logits.float(), dim=-1)
    mean = probs.reshape(-1, samples, probs.shape[-1]).mean(dim=1)
    return mean.topk(k, dim=-1)


@pytest.mark.parametrize("samples", [1, 3])
def test_top_tokens_equal_softmax_then_top_k(samples):
    generator = torch.Generator().manual_seed(0)
    cells, vocab = 12, 1000
    logits = 4 * torch.randn(cells * samples, vocab, generator=generator)
    top = Top(cells * samples, samples, torch.device("cpu"))
    # in chunks that split some cells' samples over two of them, in no particular order
    order = torch.randperm(cells, generator=generator).tolist()
    rows = [c * samples + s for c in order for s in range(samples)]
    cuts = [c for c in (0, 5, 6, 20) if c < len(rows)] + [len(rows)]
    for start, stop in itertools.pairwise(cuts):
        chunk = rows[start:stop]
        top.add(chunk, logits[chunk])
    assert not top.pending
    probs, ids = direct(logits, samples)
    kept = top.kept()
    assert torch.equal(kept["ids"], ids)
    torch.testing.assert_close(kept["probs"], probs, atol=1e-6, rtol=0)


def test_a_sweeps_top_tokens_are_softmax_then_top_k(tiny):
    """On a real sweep (one row a cell): each cell's kept top tokens are those of its logits
    run again as a full forward pass."""
    model, tok = tiny
    plan = nv.plan(TOGETHER["heads at the last position"], model=model, tokenizer=tok)
    res = nv.run(TOGETHER["heads at the last position"], model=model, tokenizer=tok)
    ids, probs = res.top["ids"].flatten(0, -2), res.top["probs"].flatten(0, -2)
    for row in (0, len(plan.rows) // 2, len(plan.rows) - 1):
        p, i = direct(cell_logits(plan, [row]).patched, 1)
        assert ids[row].tolist() == i[0].tolist()
        torch.testing.assert_close(probs[row], p[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(64, 49152), (7, 50257), (50257,), (5, 64 * 20 + 3), (3, 100)])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_top_k_by_blocks_is_torchs_top_k(shape, k):
    x = 3 * torch.randn(*shape, generator=torch.Generator().manual_seed(k))
    values, ids = top_k(x, k)
    expected = x.topk(min(k, shape[-1]), dim=-1)
    assert torch.equal(values, expected.values) and torch.equal(ids, expected.indices)
