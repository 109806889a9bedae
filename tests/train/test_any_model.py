"""Any model: a GRU over float sequences (per-timestep units), a transformers LM with text
prompts and token labels, a float64 network; and float inputs in nv.run."""

import pytest
import torch
from planted import WIDTH, pairs, planted, train
from torch import nn

import nbvene as nv


class Recurrent(nn.Module):
    """A GRU over (batch, seq, 3) inputs; the class comes from its last output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gru = nn.GRU(3, 12, batch_first=True)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1])


def test_gru_per_timestep_units():
    model = Recurrent().eval()
    g = torch.Generator().manual_seed(1)
    base, source = torch.randn(300, 6, 3, generator=g), torch.randn(300, 6, 3, generator=g)
    # one unit per timestep: collect them, and patch the last one from the source
    res = nv.run("base: {b}\ncollect: gru.output", model=model, namespace={"b": base[:2]})
    assert res.values.shape == (2, 6, 12)
    with torch.no_grad():
        torch.testing.assert_close(res.values, model.gru(base[:2])[0])
        labels = model(source).argmax(-1)  # the source's class: what its last state says
    spec = "base: {b}\nsource: {s}\npatch: gru.output pos=-1 via low_rank_rotated(k=4)\nlabel: {y}"
    trained = nv.train(
        spec,
        model=model,
        namespace={"b": base, "s": source, "y": labels},
        epochs=15,
        lr=3e-2,
        progress=False,
    )
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert trained.iia > 0.6
    assert trained.basis.shape == (12, 4)
    # and applied with nv.run: the metric reads the (batch, classes) output
    res = nv.run(
        "base: {b}\nsource: {s}\npatch: gru.output pos=-1 via {t}\nmetric: logit(2)",
        model=model,
        namespace={"b": base[:4], "s": source[:4], "t": trained},
    )
    assert res.axes == ("example",) and res.values.shape == (4,)


def test_language_model_with_text_and_token_labels():
    model, tok = nv.models.tiny("llama")
    names = [" Paris", " Rome", " Mary", " John"]
    base = [f"I think of{n} and" for n in names] * 6
    source = [f"I think of{n} and" for n in reversed(names)] * 6
    with torch.no_grad():  # the label: the token the source run itself predicts
        labels = [int(model(**tok(s, return_tensors="pt")).logits[0, -1].argmax()) for s in source]
    spec = """
    base:   {base}
    source: {source}
    patch:  block_output layer=1 pos=-1 via low_rank_rotated(k=32)
    label:  {label}
    """
    namespace = {"base": base, "source": source, "label": labels}
    trained = nv.train(
        spec,
        model=model,
        tokenizer=tok,
        namespace=namespace,
        epochs=15,
        lr=5e-2,
        batch_size=8,
        held_out=None,
        progress=False,
    )
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert trained.iia >= 0.5
    assert trained.basis.shape == (64, 32)
    with pytest.raises(nv.NbveneError, match="the label 'Paris and' is 3 tokens"):
        nv.train(
            spec,
            model=model,
            tokenizer=tok,
            progress=False,
            namespace={**namespace, "label": ["Paris and"] * len(base)},
        )


def test_a_float64_model_trains_with_float32_rotations():
    model, u = planted()
    model = model.double()
    data = pairs(600, seed=30)
    data.base, data.source = data.base.double(), data.source.double()
    trained = train("rotated(k=1)", model, data, epochs=6)
    assert trained.iia >= 0.95
    assert trained.intervention.matrix.dtype == torch.float32
    assert abs(float(trained.basis[:, 0] @ u)) > 0.95


def test_float_inputs_in_nv_run(adder):
    """Float tensors are inputs: (batch, features) rows are one position each, so units
    have no sequence axis and take no pos=; outputs without one are read whole."""
    model, _ = adder
    data = pairs(8, seed=31)
    res = nv.run(
        "base: {b}\nsource: {s}\npatch: hidden.output\nmetric: p(5)",
        model=model,
        namespace={"b": data.base, "s": data.source},
    )
    with torch.no_grad():
        expected = model(data.source).softmax(-1)[:, 5]  # the whole hidden layer patched
    torch.testing.assert_close(res.values, expected)
    one = nv.run("base: {b}\ncollect: hidden.output", model=model, namespace={"b": data.base[0]})
    assert one.values.shape == (WIDTH,)
    mean = nv.run(
        "base: {b}\nmean: hidden.output\nmetric: logit(0)", model=model, namespace={"b": data.base}
    )
    assert mean.values.shape == (8,)
    with pytest.raises(nv.NbveneError, match="pos=1 is past the prompt"):
        nv.run(
            "base: {b}\nzero: hidden.output pos=1\nmetric: p(0)",
            model=model,
            namespace={"b": data.base},
        )
