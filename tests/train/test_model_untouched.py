"""The model leaves nv.train as it came: weights bitwise unchanged and frozen flags restored
(unless it is trained itself, train_model=True), and no hooks left, also after a failure."""

import pytest
import torch
from planted import WIDTH, hook_count, pairs, planted, spec, train

import nbvene as nv


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_weights_flags_and_hooks_are_untouched():
    model, _ = planted()
    model.out.weight.requires_grad_(False)  # the user's own choice, kept
    before, flags = state(model), [p.requires_grad for p in model.parameters()]
    mine = model.hidden.register_forward_hook(lambda *a: None)  # the user's own hook, kept
    trained = train("rotated(k=1)", model, pairs(200, seed=20), epochs=2)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert hook_count(model) == 1
    mine.remove()
    assert all(p.grad is None for p in model.parameters())  # no gradient reached the model
    assert trained.basis.shape == (WIDTH, 1)


@pytest.mark.parametrize(
    "failure", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "keyboard-interrupt"]
)
def test_a_failure_mid_training_leaves_the_model_clean(failure):
    model, _ = planted()
    before, hooks = state(model), hook_count(model)
    calls = []

    def loss(outputs, labels):
        calls.append(1)
        if len(calls) == 3:
            raise failure
        return torch.nn.functional.cross_entropy(outputs, labels)

    with pytest.raises(type(failure)):
        train("rotated(k=1)", model, pairs(300, seed=21), epochs=2, loss=loss)
    assert len(calls) == 3
    assert hook_count(model) == hooks
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_interchange_intervention_training_changes_the_model():
    """IIT: with train_model=True the model learns to keep the sum in unit 0, where a fixed
    interchange reads it."""
    model, _ = planted(seed=3)
    with torch.no_grad():  # start from a model that keeps the sum elsewhere
        model.hidden.weight.copy_(
            torch.randn(WIDTH, 20, generator=torch.Generator().manual_seed(4))
        )
    before = state(model)
    data, test = pairs(1000, seed=22), pairs(300, seed=23)
    fixed = spec("interchange(dims=[0])")
    untrained = nv.train(
        fixed,
        model=model,
        namespace=data.namespace(),
        epochs=0,
        held_out=None,
        train_model=True,
        progress=False,
    )
    trained = nv.train(
        fixed,
        model=model,
        namespace=data.namespace(),
        epochs=30,
        lr=3e-2,
        train_model=True,
        progress=False,
    )
    assert not torch.equal(model.hidden.weight, before["hidden.weight"])
    assert all(p.requires_grad for p in model.parameters())
    assert trained.evaluate(namespace=test.namespace())["iia"] > untrained.iia + 0.3


def test_nothing_to_train_is_an_error():
    model, _ = planted()
    with pytest.raises(nv.NbveneError, match="nothing to train"):
        train("interchange(dims=[0])", model, pairs(50, seed=24), epochs=1)
    assert hook_count(model) == 0
