"""Training on a frozen model runs the source units and the base rows below the intervened
layer once (`Reused`), and trains to the same interventions and losses as running every step
in full, on prompts of one length and of several."""

import sys

import pytest
import torch

import nbvene as nv
from nbvene.bind.training import plan_examples, resolve_calls
from nbvene.spec import parse
from nbvene.train.forward import Forward
from nbvene.train.reuse import Reused

SPEC = """\
base:   {base}
source: {source}
patch:  block_output layer=1 pos=-1 via low_rank_rotated(k=2)
label:  {label}
"""

WORDS = ["cat", "dog", "sat", "on", "mat", "and", "ran", "to", "house", "tree", "bird"]


def examples(tok, n, seed, ragged=False):
    """Prompts of one-token words: six words each, or (`ragged`) six to nine."""
    words = [w for w in WORDS if len(tok(" " + w)["input_ids"]) == 1]
    assert len(words) >= 4
    g = torch.Generator().manual_seed(seed)

    def prompt():
        length = 5 + (int(torch.randint(0, 4, (1,), generator=g)) if ragged else 0)
        chosen = torch.randint(0, len(words), (length,), generator=g)
        return "the" + "".join(" " + words[int(i)] for i in chosen)

    base = [prompt() for _ in range(n)]
    source = [prompt() for _ in range(n)]
    label = torch.randint(0, 40, (n,), generator=g)
    return {"base": base, "source": source, "label": label}


def trained(model, tok, data, **options):
    return nv.train(
        SPEC,
        model=model,
        tokenizer=tok,
        namespace=data,
        epochs=3,
        lr=1e-2,
        batch_size=8,
        seed=0,
        progress=False,
        **options,
    )


def plan_of(model, tok, data):
    bound, built = resolve_calls(parse(SPEC), dict(data), 0)
    return plan_examples(bound, model, tok, {**data, **built}, None), built


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_one_step_is_the_full_step(family):
    """The outputs and the intervention's gradients of a step, reused or run in full."""
    model, tok = nv.models.tiny(family)
    data = examples(tok, 40, 0)
    plan, built = plan_of(model, tok, data)
    assert len({len(p) for p in plan.base}) == 1
    reused, full = Forward(plan, reuse=True), Forward(plan, reuse=False)
    (rotation,) = built.values()
    for chosen in ([0, 1, 2, 3, 4, 5, 6, 7], [8, 30, 2, 17]):
        grads = []
        for forward in (reused, full):
            rotation.zero_grad()
            outputs = forward(chosen)
            torch.nn.functional.cross_entropy(outputs.float(), data["label"][chosen]).backward()
            grads.append([p.grad.clone() for p in rotation.parameters()])
            if forward is reused:
                first = outputs.detach()
        assert reused.reused.tail is not None  # started at the intervened layer
        assert torch.allclose(first, outputs, atol=1e-5)
        for a, b in zip(*grads, strict=True):
            assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_reuse_trains_as_every_step_in_full(family, monkeypatch):
    model, tok = nv.models.tiny(family)
    data = examples(tok, 40, 0)
    calls = []
    real = Reused.forward
    monkeypatch.setattr(Reused, "forward", lambda self, *a: calls.append(1) or real(self, *a))
    reused = trained(model, tok, data)
    assert calls  # the base rows started at the intervened layer
    monkeypatch.setattr(sys.modules[Forward.__module__], "reusable", lambda plan: False)
    full = trained(model, tok, data)
    losses = [r["loss"] for r in reused.history] + [reused.metrics["loss"]]
    expected = [r["loss"] for r in full.history] + [full.metrics["loss"]]
    assert losses == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(reused.basis, full.basis, atol=1e-5)
    assert reused.metrics["iia"] == full.metrics["iia"]


def test_prompts_of_several_lengths_run_every_step_in_full(monkeypatch):
    model, tok = nv.models.tiny("llama")
    plan, _ = plan_of(model, tok, examples(tok, 16, 2, ragged=True))
    assert len({len(p) for p in plan.base}) > 1
    assert not Forward(plan, reuse=True).reuse


def test_checkpointing_and_model_training_run_every_step_in_full(monkeypatch):
    model, tok = nv.models.tiny("llama")
    data = examples(tok, 16, 1)
    monkeypatch.setattr(Reused, "__init__", lambda *a: pytest.fail("reused"))
    trained(model, tok, data, checkpoint=True)
    trained(model, tok, data, train_model=True)
