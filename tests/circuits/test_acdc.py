"""The ACDC pass on a tiny model: the rule, progress, a given edge set, errors."""

from __future__ import annotations

import pytest

import nbvene as nv
from nbvene.circuits import acdc, edge_metric, edge_scores, graph_of, inputs
from nbvene.errors import NbveneError

CLEAN = ["When John and Mary went to the store, John gave", "The cat sat on the mat and the"]
CORRUPT = ["When John and Mary went to the store, Mary gave", "The cat sat on the rug and the"]


@pytest.fixture(scope="module")
def llama():
    model, tok = nv.models.tiny("llama", layers=2)
    a, b = tok(" a")["input_ids"][0], tok(" the")["input_ids"][0]
    return model, inputs(tok, CLEAN), inputs(tok, CORRUPT), lambda x: x[:, a] - x[:, b]


def test_every_removal_stays_within_tau(llama):
    model, clean, corrupted, metric = llama
    calls = []
    tau = 0.05
    kept, scores = acdc(
        model, clean, corrupted, metric, tau=tau, progress=lambda d, t: calls.append((d, t))
    )
    edges = graph_of(model)
    receivers = {(e.receiver, e.port) for e in edges}
    assert calls == [(i, len(receivers)) for i in range(1, len(receivers) + 1)]
    assert 0 < len(kept) < len(edges)
    assert scores.shape == (len(edges),)
    full = edge_metric(model, clean, corrupted, metric, edges)
    none = edge_metric(model, clean, corrupted, metric, [])
    circuit = edge_metric(model, clean, corrupted, metric, kept)
    # each removal moved the metric by less than tau of the span; the drift can add up
    removed = len(edges) - len(kept)
    assert abs(circuit - full) / abs(full - none) < tau * removed
    span = abs(full - none)
    assert all(abs(scores[edges.index(e)]) / span >= tau for e in kept if scores[edges.index(e)])


def test_tau_zero_keeps_every_edge_that_matters_and_a_huge_tau_none(llama):
    model, clean, corrupted, metric = llama
    kept, _ = acdc(model, clean, corrupted, metric, tau=1e9)
    assert kept == []
    kept, _ = acdc(model, clean, corrupted, metric, tau=0.0)
    assert len(kept) == len(graph_of(model))


def test_a_given_edge_set_is_pruned_further(llama):
    model, clean, corrupted, metric = llama
    edges = graph_of(model)
    scores = edge_scores(model, clean, corrupted, metric)
    top = [edges[i] for i in scores.abs().argsort(descending=True)[:15]]
    kept, acdc_scores = acdc(model, clean, corrupted, metric, tau=0.02, edges=top)
    assert set(kept) <= set(top)
    assert acdc_scores.shape == (15,)


def test_bad_tau_is_an_nbvene_error(llama):
    model, clean, corrupted, metric = llama
    with pytest.raises(NbveneError, match="tau must be"):
        acdc(model, clean, corrupted, metric, tau=-1)
    with pytest.raises(NbveneError, match="tau must be"):
        acdc(model, clean, corrupted, metric, tau="0.1")
