"""Gradient checkpointing in nv.train: the same losses and learned bases as without it, the
blocks really run twice, and the model is given back as it was (also after an error)."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from planted import hook_count

import nbvene as nv
from nbvene.bind.training import plan_examples
from nbvene.train.checkpoint import checkpointed
from nbvene.train.forward import Forward

NAMES = [" Paris", " Rome", " Mary", " John"]
SPEC = """
base:   {base}
source: {source}
patch:  block_output layer=1 pos=-1 via low_rank_rotated(k=4)
label:  {label}
"""


@pytest.fixture()
def lm():
    return nv.models.tiny("llama", layers=3)


def namespace():
    prompts = [f"I think of{n} and{m} then" for n in NAMES for m in NAMES]
    return {
        "base": prompts,
        "source": prompts[::-1],
        "label": [NAMES[i % 4] for i in range(len(prompts))],
    }


def train(model, tok, spec=SPEC, **options):
    settings = dict(epochs=3, lr=1e-2, batch_size=8, held_out=None, progress=False, seed=0)
    return nv.train(spec, model=model, tokenizer=tok, namespace=namespace(), **settings | options)


def blocks(model):
    return list(model.model.layers)


def test_checkpointing_gives_the_same_losses_and_basis(lm):
    model, tok = lm
    plain = train(model, tok)
    saved = train(model, tok, checkpoint=True)
    assert len(saved.history) == len(plain.history) == 3
    for a, b in zip(saved.history, plain.history, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5
    assert plain.history[-1]["loss"] < plain.history[0]["loss"]  # it learned something
    torch.testing.assert_close(saved.basis, plain.basis, atol=1e-5, rtol=0)
    assert saved.settings["checkpoint"] is True


def test_gradients_equal_with_and_without_checkpointing(lm):
    """One step's gradients on the intervention's parameters, compared directly."""
    model, tok = lm
    t = train(model, tok, epochs=0)  # built, not trained
    values = {**namespace(), **dict(zip(t.names, t.interventions, strict=True))}
    plan = plan_examples(t.bound, model, tok, values, None)
    forward, labels = Forward(plan), torch.arange(8) % 4
    grads = []
    model.requires_grad_(False)
    try:
        for checkpoint in (False, True):
            t.intervention.zero_grad(set_to_none=True)
            saving = checkpointed(model, plan.sites) if checkpoint else nullcontext()
            kept = forward.kept() if checkpoint else nullcontext()
            with saving, kept:
                out = forward(range(8))
                torch.nn.functional.cross_entropy(out, labels).backward()
            grads.append({n: p.grad.clone() for n, p in t.intervention.named_parameters()})
    finally:
        model.requires_grad_(True)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        assert grads[0][name].abs().sum() > 0
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_the_blocks_run_again_in_the_backward_pass(lm):
    model, tok = lm
    calls = []
    # a pre-hook: the replay stops at the last tensor backward needs, inside the MLP
    handle = model.model.layers[2].mlp.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        train(model, tok, epochs=1)
        plain = len(calls)
        calls.clear()
        train(model, tok, epochs=1, checkpoint=True)
        assert len(calls) > plain  # recomputed in backward
    finally:
        handle.remove()


def test_the_model_is_given_back_as_it_was(lm):
    model, tok = lm
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = hook_count(model)
    flags = (model.training, [getattr(m, "gradient_checkpointing", None) for m in model.modules()])
    train(model, tok, checkpoint=True)
    assert all("forward" not in b.__dict__ for b in blocks(model))
    assert hook_count(model) == hooks
    assert (
        model.training,
        [getattr(m, "gradient_checkpointing", None) for m in model.modules()],
    ) == flags
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())

    def failing(outputs, labels):
        raise RuntimeError("a loss that fails")

    with pytest.raises(RuntimeError, match="a loss that fails"):
        train(model, tok, checkpoint=True, loss=failing)
    assert all("forward" not in b.__dict__ for b in blocks(model))
    assert hook_count(model) == hooks
    assert all(p.requires_grad for p in model.parameters())


def test_checkpointing_with_a_serial_source_and_a_plain_network(adder, data):
    """A model nbvene has no family for: its child modules are checkpointed."""
    model, _ = adder
    spec = (
        "base: {base}\nsource s1: {source}\nsource s2: {other}\n"
        "patch: hidden.output via rotated(k=1) from s1 into s2\npatch: hidden.output from s2\n"
        "label: {label}"
    )
    values = {**data.namespace(), "other": data.base.flip(0)}
    options = dict(epochs=2, lr=1e-2, progress=False, seed=0)
    plain = nv.train(spec, model=model, namespace=values, **options)
    saved = nv.train(spec, model=model, namespace=values, checkpoint=True, **options)
    for a, b in zip(saved.history, plain.history, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5
    assert all("forward" not in m.__dict__ for m in model.children())


def test_interchange_intervention_training_with_checkpointing():
    """IIT: the model learns too, and gradients also flow through the source run."""
    histories = []
    for checkpoint in (False, True):
        model, tok = nv.models.tiny("llama", layers=3)  # a fresh copy: its weights change
        spec = SPEC.replace("low_rank_rotated(k=4)", "interchange(dims=[0, 1])")
        trained = train(model, tok, spec, lr=1e-3, train_model=True, checkpoint=checkpoint)
        histories.append([r["loss"] for r in trained.history])
    assert histories[0][-1] < histories[0][0]
    for a, b in zip(*histories, strict=True):
        assert abs(a - b) < 1e-5
