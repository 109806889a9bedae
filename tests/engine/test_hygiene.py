"""The user's model leaves every run as it came: no hooks of ours, weights bitwise unchanged,
their own hooks still in place — after success, an exception, and a KeyboardInterrupt."""

import pytest
import torch

import nbvene as nv

SPEC = """
base:   "The Colosseum is located in the city of"
source: "The Eiffel Tower is located in the city of"
patch:  block_output layer=* pos=-1 via {f}
metric: logit_diff(" Paris", " Rome")
"""


def hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def llama():
    return nv.models.tiny("llama")


@pytest.fixture
def user_hook(llama):
    model, _ = llama
    calls = []
    handle = model.model.layers[0].register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def run_with(fn, llama):
    model, tok = llama
    return nv.run(SPEC, model=model, tokenizer=tok, namespace={"f": fn}, max_batch=1)


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("boom inside the hook"), KeyboardInterrupt()],
    ids=["exception", "keyboard-interrupt"],
)
def test_failure_inside_a_hook_leaves_model_clean(llama, user_hook, failure):
    model, _ = llama
    before_hooks, before_weights = hook_count(model), weights(model)
    seen = []

    def fails_on_second_call(base, source):
        seen.append(1)
        if len(seen) == 2:
            raise failure
        return source

    # the user's error comes out on the spec line, itself chained; an interrupt as it is
    expected = nv.NbveneError if isinstance(failure, Exception) else type(failure)
    with pytest.raises(expected) as info:
        run_with(fails_on_second_call, llama)
    if expected is nv.NbveneError:
        assert info.value.line == 4 and info.value.__cause__ is failure
    assert len(seen) == 2
    assert hook_count(model) == before_hooks == 1
    after = weights(model)
    assert all(torch.equal(before_weights[k], after[k]) for k in before_weights)
    # the user's own hook still fires
    user_hook.clear()
    model(torch.tensor([[1, 2, 3]]))
    assert user_hook == [1]


def test_success_leaves_only_the_users_hook(llama, user_hook):
    model, _ = llama
    before = weights(model)
    res = run_with(lambda base, source: source, llama)
    assert res.values.shape == (2,)
    assert hook_count(model) == 1
    assert all(torch.equal(before[k], v) for k, v in weights(model).items())
    assert user_hook, "the user's hook ran during the patched forward passes"


def test_a_bad_spec_touches_nothing(llama):
    model, tok = llama
    with pytest.raises(nv.NbveneError):
        nv.run(
            SPEC.replace("layer=*", "layer=99"),
            model=model,
            tokenizer=tok,
            namespace={"f": lambda b, s: s},
        )
    assert hook_count(model) == 0


def test_hooks_context_removes_exactly_its_own(llama):
    model, _ = llama
    mine = model.model.layers[1].register_forward_hook(lambda *a: None)
    with nv.engine.Hooks(model) as hooks:
        hooks.on("model.layers.1", "output", lambda h: None)
        hooks.on("model.layers.1", "input", lambda h: None)
        assert hook_count(model) == 3
    assert hook_count(model) == 1
    mine.remove()
