"""Bad training specs and inputs fail before anything trains, naming the spec line."""

import pytest
import torch
from planted import hook_count, pairs, planted, spec

import nbvene as nv


@pytest.fixture(scope="module")
def setup():
    model, _ = planted()
    return model, pairs(40, seed=50)


def fails(setup, text, message, *, line=None, **overrides):
    model, data = setup
    namespace = {**data.namespace(), **overrides.pop("namespace", {})}
    with pytest.raises(nv.NbveneError) as info:
        nv.train(text, model=model, namespace=namespace, epochs=1, progress=False, **overrides)
    assert message in info.value.message, info.value
    if line is not None:
        assert info.value.line == line
    assert hook_count(model) == 0
    return info.value


def test_statements(setup):
    fails(setup, spec("rotated(k=1)").replace("label:  {label}", ""), "needs a label: line")
    fails(
        setup,
        spec("rotated(k=1)").replace("hidden.output", "hidden.output layer=*"),
        "names one module already",
        line=4,
    )
    fails(
        setup,
        spec("rotated(k=1)").replace("source: {source}", ""),
        "rotated(...) needs a source",
        line=4,
    )
    fails(setup, spec("rotatd(k=1)"), "unknown intervention 'rotatd'", line=4)
    e = fails(setup, spec("rotated(k=1)").replace("{label}", "{labels}"), "{labels} is not defined")
    assert e.line == 5 and "labels" in e.hint
    fails(
        setup,
        spec("interchange(dims={dims})"),
        "takes no per-example dims",
        line=4,
        namespace={"dims": [[0]] * 40},
    )


def test_sweeps_are_refused():
    model, tok = nv.models.tiny("llama")
    with pytest.raises(nv.NbveneError, match="this spec sweeps layer") as info:
        nv.train(
            'base: "a b c"\nsource: "c b a"\npatch: block_output layer=* pos=-1 via '
            "rotated(k=1)\nlabel: {y}",
            model=model,
            tokenizer=tok,
            namespace={"y": [3]},
            held_out=None,
            progress=False,
        )
    assert info.value.line == 3 and "layer=3" in info.value.hint


def test_labels(setup):
    fails(
        setup,
        spec("rotated(k=1)"),
        "has 39 labels for 40 base examples",
        namespace={"label": torch.arange(39)},
    )
    fails(
        setup,
        spec("rotated(k=1)"),
        "must hold class indices or token ids",
        namespace={"label": torch.rand(40)},
    )
    fails(
        setup,
        spec("rotated(k=1)"),
        "is text, and no tokenizer was given",
        namespace={"label": ["seven"] * 40},
    )
    fails(setup, spec("rotated(k=1)"), "too few", held_out=0.99)
    fails(setup, spec("rotated(k=1)"), "held_out must be a fraction", held_out=1.5)


def test_float_targets_with_a_loss(setup):
    """With loss=, labels may be anything with one row per example."""
    model, data = setup
    target = torch.randn(40, 19)
    trained = nv.train(
        spec("rotated(k=1)"),
        model=model,
        namespace=data.namespace(target),
        loss=torch.nn.functional.mse_loss,
        epochs=1,
        progress=False,
    )
    assert trained.history[0]["loss"] > 0


def test_nv_run_keeps_its_rules(setup):
    model, data = setup
    with pytest.raises(nv.NbveneError, match="the spec has no metric"):
        nv.run(spec("rotated(k=1)"), model=model, namespace=data.namespace())
    with pytest.raises(nv.NbveneError, match=r"rotated\(\.\.\.\) needs a source") as info:
        nv.run(
            "base: {b}\npatch: hidden.output via rotated(k=1)\nmetric: p(1)",
            model=model,
            namespace={"b": data.base},
        )
    assert info.value.line == 2
