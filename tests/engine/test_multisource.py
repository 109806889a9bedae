"""Multi-source interventions against hand-written hooks: named sources patched in parallel (each
from its own clean run) and in series (`into`: a later source's run already holds the earlier
patches), with sweeps, heads and batches."""

from __future__ import annotations

import pytest
import torch

import nbvene as nv

LENGTH = 9
A, B = 5, 17  # metric tokens: logit_diff(5, 17)


def ids(seed: int, n: int | None = None) -> torch.Tensor:
    """Random token ids: one prompt (1-D), or a batch of n."""
    shape = (LENGTH,) if n is None else (n, LENGTH)
    return torch.randint(0, 500, shape, generator=torch.Generator().manual_seed(seed))


def blocks(model):
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


def head_input(model, layer: int):
    """The module whose input is the heads' outputs (z), concatenated."""
    block = blocks(model)[layer]
    return block.attn.c_proj if hasattr(block, "attn") else block.self_attn.o_proj


def n_heads(model) -> int:
    return model.config.num_attention_heads


class Oracle:
    """Plain PyTorch hooks, written without nbvene: record or overwrite block outputs (at
    positions) and heads' outputs (z, at positions), then remove them."""

    def __init__(self, model):
        self.model, self.handles = model, []

    def run(self, x: torch.Tensor) -> torch.Tensor:
        try:
            with torch.no_grad():
                return self.model(input_ids=x.reshape(-1, LENGTH)).logits[:, -1]
        finally:
            for h in self.handles:
                h.remove()
            self.handles = []

    def block(self, layer: int, pos: int, *, keep: dict | None = None, put=None):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if keep is not None:
                keep[layer, pos] = hidden[:, pos].clone()
            if put is not None:
                hidden = hidden.clone()
                hidden[:, pos] = put
                return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
            return None

        self.handles.append(blocks(self.model)[layer].register_forward_hook(hook))

    def head(self, layer: int, head: int, pos: int, *, keep: dict | None = None, put=None):
        d = self.model.config.hidden_size // n_heads(self.model)

        def hook(module, args):
            z = args[0]
            cols = slice(head * d, (head + 1) * d)
            if keep is not None:
                keep[layer, head, pos] = z[:, pos, cols].clone()
            if put is not None:
                z = z.clone()
                z[:, pos, cols] = put
                return (z, *args[1:])
            return None

        self.handles.append(head_input(self.model, layer).register_forward_pre_hook(hook))


def diff(logits: torch.Tensor) -> torch.Tensor:
    return logits[..., A] - logits[..., B]


METRIC = f"metric: logit_diff({A}, {B})"


@pytest.fixture(params=["gpt2", "llama"])
def model(request):
    return nv.models.tiny(request.param, seed=0)[0]


def run(model, body: str, **namespace) -> nv.Result:
    return nv.run(body + "\n" + METRIC, model=model, namespace=namespace)


def test_parallel_sources_each_come_from_their_own_clean_run(model):
    base, s1, s2 = ids(0), ids(1), ids(2)
    res = run(
        model,
        """
        base: {base}
        source s1: {s1}
        source s2: {s2}
        patch: block_output layer=0 pos=2 from s1
        patch: block_output layer=1 pos=-1 from s2
        """,
        base=base,
        s1=s1,
        s2=s2,
    )
    o, kept = Oracle(model), {}
    o.block(0, 2, keep=kept)
    o.run(s1)
    o.block(1, -1, keep=kept)
    o.run(s2)
    o.block(0, 2, put=kept[0, 2])
    o.block(1, -1, put=kept[1, -1])
    expected = diff(o.run(base))[0]
    torch.testing.assert_close(res.values, expected, atol=1e-5, rtol=0)
    # the clean run is the first named source; the patch is not a no-op
    torch.testing.assert_close(res.clean, diff(Oracle(model).run(s1))[0], atol=1e-5, rtol=0)
    assert abs(float(expected - res.corrupted)) > 1e-3


def test_serial_sources_see_the_earlier_patches(model):
    base, s1, s2 = ids(3), ids(4), ids(5)
    body = """
        base: {base}
        source s1: {s1}
        source s2: {s2}
        patch: block_output layer=0 pos=4 from s1 into s2
        patch: block_output layer=1 pos=4 from s2
        """
    res = run(model, body, base=base, s1=s1, s2=s2)
    o, kept = Oracle(model), {}
    o.block(0, 4, keep=kept)
    o.run(s1)
    o.block(0, 4, put=kept[0, 4])  # s2's run with s1's patch, then keep layer 1 there
    o.block(1, 4, keep=kept)
    o.run(s2)
    o.block(1, 4, put=kept[1, 4])
    expected = diff(o.run(base))[0]
    torch.testing.assert_close(res.values, expected, atol=1e-5, rtol=0)

    # parallel differs: s2's clean layer-1 output, and s1's patch applied to the base itself
    parallel = run(model, body.replace(" into s2", ""), base=base, s1=s1, s2=s2)
    o.block(1, 4, keep=kept)
    o.run(s2)
    o.block(0, 4, put=kept[0, 4])
    o.block(1, 4, put=kept[1, 4])
    torch.testing.assert_close(parallel.values, diff(o.run(base))[0], atol=1e-5, rtol=0)
    assert abs(float(parallel.values - res.values)) > 1e-4


def test_a_sweep_into_a_source_runs_it_once_per_cell(model):
    """Path patching's shape: the swept statement goes into s2, so s2's run differs per cell."""
    base, s1, s2 = ids(6), ids(7), ids(8)
    heads = n_heads(model)
    res = run(
        model,
        """
        base: {base}
        source s1: {s1}
        source s2: {s2}
        patch: z layer=0 head=* pos=-1 from s1 into s2
        patch: block_output layer=1 pos=-1 from s2
        """,
        base=base,
        s1=s1,
        s2=s2,
    )
    assert res.axes == ("head",) and res.values.shape == (heads,)
    expected = []
    for h in range(heads):
        o, kept = Oracle(model), {}
        o.head(0, h, -1, keep=kept)
        o.run(s1)
        o.head(0, h, -1, put=kept[0, h, -1])
        o.block(1, -1, keep=kept)
        o.run(s2)
        o.block(1, -1, put=kept[1, -1])
        expected.append(diff(o.run(base))[0])
    torch.testing.assert_close(res.values, torch.stack(expected), atol=1e-5, rtol=0)
    assert res.values.std() > 1e-4  # the cells differ


def test_chains_of_three_and_zero_into_a_source(model):
    """s1 → s2 → s3 → base, with a zero: applied inside s2's run."""
    base, s1, s2, s3 = ids(9), ids(10), ids(11), ids(12)
    res = run(
        model,
        """
        base: {base}
        source s3: {s3}
        source s2: {s2}
        source s1: {s1}
        patch: block_output layer=1 pos=-1 from s3      # written first; runs last
        patch: block_output layer=0 pos=1 from s2 into s3
        patch: block_output layer=0 pos=3 from s1 into s2
        zero:  z layer=0 head=1 pos=3 into s2
        """,
        base=base,
        s1=s1,
        s2=s2,
        s3=s3,
    )
    o, kept = Oracle(model), {}
    o.block(0, 3, keep=kept)
    o.run(s1)
    d = model.config.hidden_size // n_heads(model)
    o.head(0, 1, 3, put=torch.zeros(d))
    o.block(0, 3, put=kept[0, 3])
    o.block(0, 1, keep=kept)
    o.run(s2)
    o.block(0, 1, put=kept[0, 1])
    o.block(1, -1, keep=kept)
    o.run(s3)
    o.block(1, -1, put=kept[1, -1])
    torch.testing.assert_close(res.values, diff(o.run(base))[0], atol=1e-5, rtol=0)


def test_batches_take_one_named_source_per_example():
    model = nv.models.tiny("gpt2", seed=0)[0]
    base, s1, s2 = ids(13, 3), ids(14, 3), ids(15)  # s2: one prompt for all examples
    res = run(
        model,
        """
        base: {base}
        source s1: {s1}
        source s2: {s2}
        patch: block_output layer=0 pos=-1 from s1 into s2
        patch: block_output layer=1 pos=-1 from s2
        """,
        base=base,
        s1=s1,
        s2=s2,
    )
    assert res.values.shape == (3,)
    for e in range(3):
        o, kept = Oracle(model), {}
        o.block(0, -1, keep=kept)
        o.run(s1[e : e + 1])
        o.block(0, -1, put=kept[0, -1])
        o.block(1, -1, keep=kept)
        o.run(s2)
        o.block(1, -1, put=kept[1, -1])
        torch.testing.assert_close(
            res.values[e], diff(o.run(base[e : e + 1]))[0], atol=1e-5, rtol=0
        )


def test_the_unnamed_source_and_named_ones_together():
    model = nv.models.tiny("llama", seed=0)[0]
    base, s, s2 = ids(16), ids(17), ids(18)
    res = run(
        model,
        """
        base: {base}
        source: {s}
        source other: {s2}
        patch: block_output layer=0 pos=2
        patch: block_output layer=1 pos=-1 from other
        """,
        base=base,
        s=s,
        s2=s2,
    )
    o, kept = Oracle(model), {}
    o.block(0, 2, keep=kept)
    o.run(s)
    o.block(1, -1, keep=kept)
    o.run(s2)
    o.block(0, 2, put=kept[0, 2])
    o.block(1, -1, put=kept[1, -1])
    torch.testing.assert_close(res.values, diff(o.run(base))[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(res.clean, diff(Oracle(model).run(s))[0], atol=1e-5, rtol=0)


def test_the_model_keeps_no_hooks_after_a_serial_run(model):
    before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    run(
        model,
        "base: {b}\nsource s1: {s1}\nsource s2: {s2}\n"
        "patch: block_output layer=* pos=-1 from s1 into s2\npatch: mlp_output layer=1 from s2",
        b=ids(0),
        s1=ids(1),
        s2=ids(2),
    )
    after = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    assert after == before


def test_the_dry_run_counts_the_serial_runs():
    """--dry-run's count of forward passes is what running the spec takes."""
    from nbvene.magics.magic import dry_run

    model = nv.models.tiny("gpt2", seed=0)[0]
    spec = (
        "base: {b}\nsource s1: {s1}\nsource s2: {s2}\n"
        "patch: z layer=* head=* pos=-1 from s1 into s2\npatch: block_output layer=1 from s2\n"
        + METRIC
    )
    values = {"b": ids(0), "s1": ids(1), "s2": ids(2)}
    text = dry_run(nv.plan(spec, model=model, namespace=values), "tiny", max_batch=3)
    passes = int(text.split("forward passes: ")[1].split()[0])
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        nv.run(spec, model=model, namespace=values, max_batch=3, start_at_layer=False)
    finally:
        handle.remove()
    assert "each after 1 serial source" in text
    assert passes == len(calls) == 1 + 1 + 1 + 3 * 2  # clean, s1, unpatched, 3 chunks × 2


def test_the_base_run_starts_at_its_own_first_patched_layer():
    """Statements `into` a named source patch another run: the base run below the first layer
    it patches itself is the unpatched one, so it starts there (the values do not change)."""
    model = nv.models.tiny("llama", seed=0, layers=3)[0]
    spec = (
        "base: {b}\nsource s1: {s1}\nsource s2: {s2}\n"
        "patch: z layer=0..1 head=* pos=-1 from s1 into s2\n"
        "patch: block_output layer=2 pos=-1 from s2\n" + METRIC
    )
    values = {"b": ids(0), "s1": ids(1), "s2": ids(2)}
    calls = []
    handle = model.model.layers[1].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        late = nv.run(spec, model=model, namespace=values, max_batch=8)
        starts_late = len(calls)
        calls.clear()
        full = nv.run(spec, model=model, namespace=values, max_batch=8, start_at_layer=False)
    finally:
        handle.remove()
    torch.testing.assert_close(late.values, full.values, atol=1e-5, rtol=0)
    # 8 cells, one chunk: clean + s1 + unpatched + s2's run (+ the base run without the tail)
    assert (starts_late, len(calls)) == (4, 5)
