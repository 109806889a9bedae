"""The planted circuit: a toy trained to route the answer through three known edges; EAP,
EAP-IG and ACDC recover them, and ablation confirms them (faithfulness)."""

from __future__ import annotations

import pytest
import torch

from nbvene.circuits import acdc, curve, edge_scores, faithfulness, graph_of
from nbvene.circuits.planted import Planted, planted


@pytest.fixture(scope="module")
def toy() -> Planted:
    return planted()


def precision_recall(found, truth) -> tuple[float, float]:
    found, truth = set(found), set(truth)
    hits = len(found & truth)
    return hits / max(len(found), 1), hits / len(truth)


def test_the_toy_answers_through_its_route(toy):
    with torch.no_grad():
        logits = toy.model(input_ids=toy.clean.ids).logits[:, -1]
    assert (logits.argmax(-1) == toy.answers).all()
    assert toy.metric(logits).min() > 1.0
    assert set(toy.edges) <= set(graph_of(toy.model))
    assert len(toy.clean_texts) == len(toy.corrupted_texts) == toy.clean.rows


def test_training_is_deterministic_whatever_the_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = planted(seed=3, prompts=4, steps=30)
        torch.set_num_threads(2)
        b = planted(seed=3, prompts=4, steps=30)
        assert torch.get_num_threads() == 2  # restored after training
    finally:
        torch.set_num_threads(threads)
    assert a.clean_texts == b.clean_texts and a.corrupted_texts == b.corrupted_texts
    for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_attribution_recovers_the_planted_edges(toy, method):
    scores = edge_scores(toy.model, toy.clean, toy.corrupted, toy.metric, method=method)
    edges = graph_of(toy.model)
    top = [edges[i] for i in scores.abs().argsort(descending=True)[: len(toy.edges)]]
    precision, recall = precision_recall(top, toy.edges)
    assert precision >= 0.9 and recall >= 0.9
    # patching the route from the corrupted run lowers the logit difference
    assert all(scores[edges.index(edge)] < 0 for edge in toy.edges)


def test_acdc_recovers_the_planted_edges(toy):
    kept, scores = acdc(toy.model, toy.clean, toy.corrupted, toy.metric, tau=0.02)
    precision, recall = precision_recall(kept, toy.edges)
    assert precision >= 0.9 and recall >= 0.9
    edges = graph_of(toy.model)
    assert scores.shape == (len(edges),)
    kept_scores = [scores[edges.index(edge)].abs() for edge in kept]
    removed = [scores[edges.index(edge)].abs() for edge in edges if edge not in kept]
    assert min(kept_scores) > 10 * max(removed)


def test_ablation_confirms_the_circuit(toy):
    edges = graph_of(toy.model)
    rest = [edge for edge in edges if edge not in toy.edges]
    args = toy.model, toy.clean, toy.corrupted, toy.metric
    assert faithfulness(*args, toy.edges) >= 0.9
    assert faithfulness(*args, rest) < 0.2
    assert faithfulness(*args, toy.edges, ablation="mean") >= 0.9
    ranked = sorted(toy.edges) + rest
    points = dict(curve(*args, ranked, [0, 1, 3, len(edges)]))
    assert points[0] == pytest.approx(0.0, abs=1e-6)
    assert points[1] < 0.2
    assert points[3] >= 0.9
    assert points[len(edges)] == pytest.approx(1.0, abs=1e-6)
