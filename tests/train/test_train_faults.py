"""nv.train under faults: a step that runs out of memory is made in halves whose gradients add
up to the same step; Ctrl-C gives nv.TrainingInterrupted with the interventions as of the last
finished step and the curve so far, usable and savable; the model comes out clean."""

import pytest
import torch
from faults import OUT_OF_MEMORY, Passes, Snapshot, on_call
from planted import pairs, planted, train

import nbvene as nv
from nbvene.train import load_interventions

SETTINGS = {"batch_size": 32, "held_out": None, "lr": 1e-2}
STEPS_PER_EPOCH = 3  # 96 examples, 32 a step


@pytest.fixture(scope="module")
def data():
    return pairs(96, seed=5)


def base_runs(model, fail=None):
    """The training steps' forward passes (the ones with gradients) through the hidden layer."""
    return Passes(model.hidden, fail, grad_only=True)


@pytest.mark.parametrize("how", ["hook", "signal"])
def test_an_interrupt_keeps_the_interventions_of_the_last_finished_step(data, tmp_path, how):
    model, _ = planted()
    clean = Snapshot(model)
    stop = (lambda: "SIGINT") if how == "signal" else KeyboardInterrupt
    # the 4th step's forward pass is stopped: 3 steps (epoch 1) finished
    with (
        base_runs(model, on_call(STEPS_PER_EPOCH + 1, error=stop)),
        pytest.raises(nv.TrainingInterrupted) as info,
    ):
        train("rotated(k=1)", model, data, epochs=3, **SETTINGS)
    clean.assert_clean()
    assert isinstance(info.value, KeyboardInterrupt)
    partial = info.value.result
    one_epoch = train("rotated(k=1)", model, data, epochs=1, **SETTINGS)
    assert torch.equal(partial.basis, one_epoch.basis)
    assert partial.history == one_epoch.history
    assert partial.settings["interrupted_after_steps"] == STEPS_PER_EPOCH
    # usable and savable
    folder = partial.save(tmp_path / "partial")
    loaded = load_interventions(folder, model=model)
    assert torch.equal(loaded.basis, partial.basis)
    scores = partial.evaluate(namespace=data.namespace())
    assert scores["iia"] == one_epoch.evaluate(namespace=data.namespace())["iia"]
    clean.assert_clean()


def test_an_interrupt_mid_epoch_keeps_its_finished_steps_on_the_curve(data):
    model, _ = planted()
    clean = Snapshot(model)
    with (
        base_runs(model, on_call(STEPS_PER_EPOCH + 2, error=KeyboardInterrupt)),
        pytest.raises(nv.TrainingInterrupted) as info,
    ):
        train("rotated(k=1)", model, data, epochs=3, **SETTINGS)
    history = info.value.result.history
    assert [r["epoch"] for r in history] == [1, 2]
    assert "interrupted" not in history[0] and history[1]["interrupted"] is True
    assert history[1]["loss"] > 0
    assert info.value.result.settings["interrupted_after_steps"] == STEPS_PER_EPOCH + 1
    clean.assert_clean()


@pytest.mark.parametrize("form", OUT_OF_MEMORY)
def test_out_of_memory_in_a_step_makes_it_in_halves(data, form):
    model, _ = planted()
    full = train("rotated(k=1)", model, data, epochs=2, **SETTINGS)
    clean = Snapshot(model)

    def fail(call, rows):
        return OUT_OF_MEMORY[form]() if rows > 16 else None

    with base_runs(model, fail) as passes:
        halved = train("rotated(k=1)", model, data, epochs=2, **SETTINGS)
    assert passes.rows[:3] == [32, 16, 16]  # the failed step, then its two halves
    assert max(passes.rows[1:]) == 16 and len(passes.rows) == 1 + 2 * 2 * STEPS_PER_EPOCH
    # the halves' gradients add up to the step's, up to float rounding (the sum runs in another
    # order), which Adam's first steps magnify on near-zero gradients: close, not equal
    torch.testing.assert_close(halved.basis, full.basis, atol=5e-3, rtol=0)
    assert [r["loss"] for r in halved.history] == pytest.approx(
        [r["loss"] for r in full.history], rel=1e-3
    )
    other_seed = train("rotated(k=1)", model, data, epochs=2, **{**SETTINGS, "seed": 1})
    assert (other_seed.basis - full.basis).abs().max() > 0.1  # what "not close" looks like
    clean.assert_clean()


def test_out_of_memory_with_one_example_is_one_clear_error(data):
    model, _ = planted()
    clean = Snapshot(model)
    with (
        base_runs(model, lambda call, rows: OUT_OF_MEMORY["OutOfMemoryError"]()) as passes,
        pytest.raises(nv.NbveneError, match="one row per forward pass, in the training step"),
    ):
        train("rotated(k=1)", model, data, epochs=1, **SETTINGS)
    assert passes.rows == [32, 16, 8, 4, 2, 1]
    clean.assert_clean()


@pytest.mark.parametrize("checkpoint", [False, True], ids=["plain", "checkpointed"])
def test_an_interrupted_language_model_training_leaves_the_model_as_it_was(checkpoint):
    model, tok = nv.models.tiny("llama", layers=3)
    clean = Snapshot(model)
    prompts = [f"I think of {a} and {b} then" for a in "abcd" for b in "abcd"]
    spec = "base: {b}\nsource: {s}\npatch: block_output layer=1 pos=-1 via low_rank_rotated(k=4)"
    spec += "\nlabel: {y}"
    namespace = {"b": prompts, "s": prompts[::-1], "y": [" a", " b", " c", " d"] * 4}
    with (
        Passes(model.model.layers[-1], on_call(3, error=lambda: "SIGINT"), grad_only=True),
        pytest.raises(nv.TrainingInterrupted) as info,
    ):
        nv.train(
            spec,
            model=model,
            tokenizer=tok,
            namespace=namespace,
            epochs=2,
            batch_size=4,
            held_out=None,
            progress=False,
            checkpoint=checkpoint,
        )
    clean.assert_clean()
    assert all("forward" not in block.__dict__ for block in model.model.layers)
    assert info.value.result.basis.shape == (model.config.hidden_size, 4)


def test_ctrl_c_during_an_optimizer_step_lets_the_step_finish(data, monkeypatch, request):
    """A step half applied is no state to keep: SIGINT while Adam updates waits for it."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a script's background job
        signal.signal(signal.SIGINT, signal.default_int_handler)
        request.addfinalizer(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    model, _ = planted()
    one_epoch = train("rotated(k=1)", model, data, epochs=1, **SETTINGS)
    steps = []
    original = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == STEPS_PER_EPOCH:
            signal.raise_signal(signal.SIGINT)  # arrives before the update is applied
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(nv.TrainingInterrupted) as info:
        train("rotated(k=1)", model, data, epochs=3, **SETTINGS)
    partial = info.value.result
    assert partial.settings["interrupted_after_steps"] == STEPS_PER_EPOCH
    assert torch.equal(partial.basis, one_epoch.basis)  # the third update was applied whole
