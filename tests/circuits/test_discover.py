"""`discover:` end to end: `nv.discover` and `nv.run` give the same `Circuit`, whose kept edges,
faithfulness and curve are those of the circuit functions it calls, and whose `spec` re-runs
the ablation check to the same faithfulness."""

import itertools

import pytest
import torch

import nbvene as nv
from nbvene.bind.circuit import TOP, resolve_discovery
from nbvene.circuits.ablate import faithfulness
from nbvene.circuits.edges import graph_of
from nbvene.circuits.forward import inputs

CLEAN = ["When Mary and John went to the store, John gave a drink to", "Then Anna and Tom sat, Tom"]
CORRUPTED = [
    "When Mary and John went to the store, Mary gave a drink to",
    "Then Anna and Tom sat, Anna",
]
SPEC = """base:     {clean}
source:   {corrupted}
discover: circuit by {how}
metric:   logit_diff({correct}, {wrong})"""
NAMES = {
    "clean": CLEAN,
    "corrupted": CORRUPTED,
    "correct": [" Mary", " Anna"],
    "wrong": [" John", " Tom"],
}


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request):
    return nv.models.tiny(request.param)


def discover(tiny, how: str, **kwargs) -> nv.Circuit:
    model, tok = tiny
    return nv.discover(
        SPEC.replace("{how}", how), model=model, tokenizer=tok, namespace=NAMES, **kwargs
    )


def check(tiny, circ: nv.Circuit) -> None:
    """The circuit's faithfulness is the ablation functions', and its spec re-runs it."""
    model, tok = tiny
    clean, corrupted = inputs(tok, CLEAN), inputs(tok, CORRUPTED)
    metric = resolve_discovery(nv.parse(SPEC.replace("{how}", "eap")), model, tok, NAMES).metric
    ablation = circ.meta["ablation"]
    direct = faithfulness(model, clean, corrupted, metric, circ.kept, ablation=ablation)
    assert circ.faithfulness == pytest.approx(direct, abs=1e-5)
    again = nv.run(circ.spec, model=model, tokenizer=tok, namespace=NAMES, progress=lambda *_: None)
    assert again.method == "given" and again.kept == circ.kept
    assert again.faithfulness == pytest.approx(circ.faithfulness, abs=1e-5)


def test_eap_top_k(tiny):
    model, _ = tiny
    circ = discover(tiny, "eap top=12")
    edges = graph_of(model)
    assert circ.edges == edges and circ.scores.shape == (len(edges),)
    assert circ.method == "eap" and circ.metric == "logit_diff({correct}, {wrong})"
    best = set(circ.scores.abs().argsort(descending=True)[:12].tolist())
    assert circ.kept == [e for i, e in enumerate(edges) if i in best]
    sizes = [n for n, _ in circ.curve]
    assert sizes[:4] == [0, 1, 2, 5] and sizes[-1] == len(edges) and 12 in sizes
    assert dict(circ.curve)[0] == pytest.approx(0, abs=1e-5)
    assert dict(circ.curve)[len(edges)] == pytest.approx(1, abs=1e-5)
    assert circ.meta["n_layers"] == 2 and circ.meta["prompts"] == CLEAN
    assert circ.spec.splitlines()[2].startswith("discover: circuit of [")
    check(tiny, circ)


def test_nv_run_returns_the_same_circuit(tiny):
    model, tok = tiny
    spec = SPEC.replace("{how}", "eap top=5")
    ran = nv.run(spec, model=model, tokenizer=tok, namespace=NAMES, progress=lambda *_: None)
    direct = discover(tiny, "eap top=5", progress=lambda *_: None)
    assert isinstance(ran, nv.Circuit)
    assert ran.kept == direct.kept and torch.equal(ran.scores, direct.scores)
    assert ran.faithfulness == direct.faithfulness


def test_default_top_and_a_threshold(tiny):
    circ = discover(tiny, "eap ablation=mean")
    assert len(circ.kept) == min(TOP, len(circ.edges)) and circ.meta["ablation"] == "mean"
    cut = float(circ.scores.abs().median())
    circ = discover(tiny, f"eap threshold={cut}")
    assert circ.kept == [e for e, s in zip(circ.edges, circ.scores, strict=True) if abs(s) >= cut]
    check(tiny, circ)


def test_eap_ig(tiny):
    circ = discover(tiny, "eap-ig steps=3 top=10")
    assert circ.method == "eap-ig" and len(circ.kept) == 10
    assert circ.meta["options"] == {"top": 10, "threshold": None, "steps": 3}
    check(tiny, circ)


def test_acdc_with_progress(tiny):
    calls = []
    circ = discover(tiny, "acdc tau=0.5", progress=lambda done, total: calls.append((done, total)))
    assert circ.method == "acdc" and circ.meta["options"] == {"tau": 0.5}
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    check(tiny, circ)


def test_the_per_prompt_metric_reads_each_prompts_tokens(tiny):
    model, tok = tiny
    spec = nv.parse(SPEC.replace("{how}", "eap"))
    metric = resolve_discovery(spec, model, tok, NAMES).metric
    logits = torch.randn(4, model.config.vocab_size)  # two copies of the two prompts
    ids = [[tok.encode(w)[0] for w in NAMES[k]] for k in ("correct", "wrong")]
    expected = torch.stack([logits[i, ids[0][i % 2]] - logits[i, ids[1][i % 2]] for i in range(4)])
    assert torch.equal(metric(logits), expected)
