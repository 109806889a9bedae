"""The metric registry: adding a metric is one `register` call, and the parser, the binder, the
engine and the palette all follow it."""

import pytest
import torch

import nbvene as nv
from nbvene.figures.palette import centre
from nbvene.spec import metrics

SPEC = """
base:   "The Colosseum is located in the city of"
source: "The Eiffel Tower is located in the city of"
patch:  block_output layer=* pos=-1
"""


def _gain(logits, ids, reference):
    """How much the patched run raises the token's logit over the clean run."""
    return logits[:, ids[0]] - reference[:, ids[0]]


@pytest.fixture
def logit_gain():
    found = metrics.register(
        metrics.MetricDef(
            "logit_gain", 1, _gain, needs_clean=True, centre=0.0, centre_meaning="0 = as clean"
        )
    )
    yield found
    metrics.unregister("logit_gain")


def test_a_registered_metric_runs_end_to_end(logit_gain):
    model, tok = nv.models.tiny("gpt2")
    spec = nv.parse(SPEC + 'metric: logit_gain(" Paris")')
    assert spec.metric == nv.spec.Metric("logit_gain", (" Paris",))
    gain = nv.run(spec, model=model, tokenizer=tok)
    # by hand: the patched runs' logit (the built-in metric) minus the clean run's, computed here
    logit = nv.run(SPEC + 'metric: logit(" Paris")', model=model, tokenizer=tok)
    (paris,) = tok.encode(" Paris", add_special_tokens=False)
    ids = tok("The Eiffel Tower is located in the city of", return_tensors="pt").input_ids
    with torch.no_grad():
        clean = model(ids).logits[0, -1, paris].float()
    torch.testing.assert_close(gain.values, logit.values - clean)
    assert centre(gain) == (0.0, "0 = as clean")
    assert "logit_gain" in nv.spec.STATEMENTS["metric"].help()


def test_the_parser_and_binder_read_its_entry(logit_gain):
    with pytest.raises(nv.NbveneError, match="logit_gain takes 1 token, got 2") as e:
        nv.parse('metric: logit_gain(" a", " b")')
    assert 'metric: logit_gain(" Paris")' in str(e.value)
    with pytest.raises(nv.NbveneError, match="did you mean 'logit_gain'"):
        nv.parse('metric: logit_gian(" a")')
    model, tok = nv.models.tiny("gpt2")
    no_source = 'base: "a b"\nzero: block_output layer=0\nmetric: logit_gain(" Paris")'
    with pytest.raises(nv.NbveneError, match="logit_gain compares with the clean run"):
        nv.run(no_source, model=model, tokenizer=tok)


def test_unregistered_it_is_unknown_again(logit_gain):
    metrics.unregister("logit_gain")
    with pytest.raises(nv.NbveneError, match="unknown metric 'logit_gain'"):
        nv.parse('metric: logit_gain(" a")')
    metrics.register(logit_gain)  # for the fixture to remove


def test_names_are_taken_once():
    with pytest.raises(ValueError, match="'prob' is taken"):
        metrics.register(metrics.MetricDef("prob", 1, _gain))
    assert metrics.lookup("prob") is metrics.lookup("p")
    assert metrics.names()[:6] == ("p", "prob", "logprob", "logit", "logit_diff", "kl")
