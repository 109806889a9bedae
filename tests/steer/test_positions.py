"""Which positions are changed at which step: spies on the block's raw output (registered
before nbvene's hooks, so they see it unsteered) and on the next block's input (steered), for
every pos= mode, with and without the KV cache."""

import pytest
import torch

import nbvene as nv

PROMPT = "The Eiffel Tower is located in"
NEW = 4
LAYER = 1


class Spy:
    """Per forward pass: the absolute positions whose hidden state nbvene changed, per row."""

    def __init__(self, model, cached: bool):
        self.cached, self.seen, self.steps = cached, 0, []
        layers = model.model.layers
        self.handles = [
            layers[LAYER].register_forward_hook(self.before),
            layers[LAYER + 1].register_forward_pre_hook(self.after, with_kwargs=True),
        ]

    def before(self, module, args, output):
        self.raw = (output[0] if isinstance(output, tuple) else output).clone()

    def after(self, module, args, kwargs):
        steered = args[0] if args else kwargs["hidden_states"]
        start = self.seen if self.cached else 0
        changed = (steered - self.raw).abs().amax(-1) > 0  # (rows, tokens)
        self.steps.append(
            [sorted(start + i for i in row.nonzero().flatten().tolist()) for row in changed]
        )
        self.seen += steered.shape[1]

    def remove(self):
        for h in self.handles:
            h.remove()


def run(llama, pos: str, cached: bool, v=None):
    model, tok = llama
    if v is None:
        v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    by = "{v} * [3]"
    where = f" pos={pos}" if pos else ""
    spec = (
        f"steer: block_output layer={LAYER}{where} by {by}\n"
        f'generate: "{PROMPT}" max_new_tokens={NEW}'
    )
    spy = Spy(model, cached)
    try:
        gen = nv.generate(spec, model=model, tokenizer=tok, namespace={"v": v}, use_cache=cached)
    finally:
        spy.remove()
    assert [len(ids) for ids in gen.ids] == [NEW, NEW]  # no early stop: every step happened
    assert all(step[0] == [] for step in spy.steps), "the baseline row was changed"
    return [step[1] for step in spy.steps], len(tok(PROMPT)["input_ids"])


def expected(mode, cached: bool, P: int) -> list[list[int]]:
    """The positions `mode` steers at each of the NEW forward passes."""
    out = []
    for step in range(NEW):
        present = range(P + step) if not cached or step == 0 else [P + step - 1]
        if not cached and step > 0:
            present = range(P + step)
        out.append([p for p in present if mode(p, P)])
    return out


MODES = {
    "*": lambda p, P: True,
    "": lambda p, P: True,  # no pos=: every position
    "prompt": lambda p, P: p < P,
    "generated": lambda p, P: p >= P,
    "-1": lambda p, P: p == P - 1,
    "last": lambda p, P: p == P - 1,
    "0..1": lambda p, P: p in (0, 1),
    "[1, 10]": lambda p, P: p in (1, 10),  # 10 is the third generated position (P = 8)
}


@pytest.mark.parametrize("cached", [True, False], ids=["kv-cache", "no-cache"])
@pytest.mark.parametrize("pos", list(MODES))
def test_changed_positions_per_step(llama, pos, cached):
    steps, P = run(llama, pos, cached)
    assert P == 8
    assert steps == expected(MODES[pos], cached, P)


def test_with_the_cache_each_generated_position_is_steered_once(llama):
    steps, P = run(llama, "*", True)
    assert steps == [list(range(P)), [P], [P + 1], [P + 2]]
    steps, P = run(llama, "*", False)
    assert steps == [list(range(P + k)) for k in range(NEW)]


@pytest.mark.parametrize("cached", [True, False], ids=["kv-cache", "no-cache"])
def test_per_position_vector_from_diff_steers_its_first_positions(llama, cached):
    model, tok = llama
    # made before the spies are attached: making it runs the model too
    v = nv.vector(
        "Paris is a city", "Rome is a city", method="diff", model=model, tokenizer=tok, layer=LAYER
    )
    k = 5  # tokens of each diff prompt, which differ from the first
    assert v.values.shape == (k, model.config.hidden_size)
    steps, P = run(llama, None, cached, v)
    assert steps == expected(lambda p, P: p < k, cached, P)
