"""The graph edge scores are aligned with: senders, receivers and their order on each family,
grouped-query attention, parallel residual blocks, and families without edges."""

from __future__ import annotations

import itertools

import pytest
import torch

import nbvene as nv
from nbvene.circuits import Edge, Node, edge_metric, edge_scores, graph_of, inputs
from nbvene.errors import NbveneError

CLEAN = ["When John and Mary went to the store, John gave", "The cat sat on the mat and the"]
CORRUPT = ["When John and Mary went to the store, Mary gave", "The cat sat on the rug and the"]


def test_gpt2_graph():
    model, _ = nv.models.tiny("gpt2", layers=2)
    edges = graph_of(model)
    # per layer 4 q, 4 k, 4 v receivers (no grouping) and an MLP; senders: embed, 4 heads, mlp
    assert len(edges) == 12 * 1 + 5 + 12 * 6 + 10 + 11
    assert edges[0] == Edge(Node(-1, "embed"), Node(0, "head", 0), "q")
    assert edges[-1] == Edge(Node(1, "mlp"), Node(2, "logits"), "in")
    assert Edge(Node(0, "head", 3), Node(0, "mlp")) in edges  # sequential block
    assert Edge(Node(0, "mlp"), Node(0, "head", 1), "q") not in edges
    assert len(set(edges)) == len(edges)


def order(node: Node) -> tuple:
    """Where a node computes: heads before the MLP of their layer."""
    return (node.layer, node.kind == "mlp")


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox", "phi3"])
def test_edges_are_in_topological_order(family):
    model, _ = nv.models.tiny(family, layers=2)
    edges = graph_of(model)
    for edge in edges:
        assert order(edge.sender) < order(edge.receiver) or edge.receiver.kind == "logits"
    receivers = [(e.receiver, e.port) for e in edges]
    firsts = list(dict.fromkeys(receivers))
    # by receiver, then sender: a receiver's edges are contiguous
    assert sum(1 for a, b in itertools.pairwise(receivers) if a != b) == (len(firsts) - 1)


def test_grouped_query_attention_has_a_key_value_receiver_per_group():
    model, _ = nv.models.tiny("llama", layers=2)  # 4 query heads, 2 key/value heads
    edges = graph_of(model)
    ports = {
        (e.receiver.head, e.port) for e in edges if e.receiver == Node(1, "head", e.receiver.head)
    }
    assert {h for h, p in ports if p == "q"} == {0, 1, 2, 3}
    # keys and values are per key/value head, named by the group's first query head
    assert {h for h, p in ports if p == "k"} == {h for h, p in ports if p == "v"} == {0, 2}
    senders = {e.sender for e in edges}
    assert {n.head for n in senders if n.kind == "head"} == {0, 1, 2, 3}


def test_parallel_residual_blocks_have_no_same_layer_head_to_mlp_edges():
    parallel, _ = nv.models.tiny("gpt_neox", layers=2)
    assert parallel.config.use_parallel_residual
    same_layer = Edge(Node(0, "head", 0), Node(0, "mlp"))
    assert same_layer not in graph_of(parallel)
    sequential, _ = nv.models.tiny("gpt_neox", layers=2, use_parallel_residual=False)
    assert same_layer in graph_of(sequential)


@pytest.mark.parametrize(
    "family",
    ["gpt_neox", "phi3", "qwen2", "mistral", "gemma", "olmo"],
)
def test_families_patch_between_clean_and_corrupted(family):
    """With every edge kept the edge-patched model is the clean model; with none, the
    corrupted one; and the scores are finite."""
    model, tok = nv.models.tiny(family, layers=2)
    clean, corrupted = inputs(tok, CLEAN), inputs(tok, CORRUPT)
    token = tok(" a")["input_ids"][0]

    def metric(logits):
        return logits[:, token]

    def plain(x):
        with torch.no_grad():
            logits = model(input_ids=x.ids, attention_mask=x.mask).logits
        return metric(logits[torch.arange(x.rows), x.read]).mean().item()

    edges = graph_of(model)
    full = edge_metric(model, clean, corrupted, metric, edges)
    assert full == pytest.approx(plain(clean), abs=1e-5)
    assert edge_metric(model, clean, corrupted, metric, []) == pytest.approx(
        plain(corrupted), abs=1e-5
    )
    scores = edge_scores(model, clean, corrupted, metric)
    assert scores.shape == (len(edges),) and torch.isfinite(scores).all()


@pytest.mark.parametrize("family", ["bert", "gemma2", "gptj", "opt"])
def test_families_without_edges_are_refused(family):
    model, _ = nv.models.tiny(family, layers=2)
    with pytest.raises(NbveneError, match="circuit discovery does not support"):
        graph_of(model)


def test_a_model_of_no_known_family_is_refused():
    with pytest.raises(NbveneError, match="circuit discovery"):
        graph_of(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_bad_arguments_are_nbvene_errors():
    model, tok = nv.models.tiny("gpt2", layers=1)
    clean, corrupted = inputs(tok, CLEAN), inputs(tok, CORRUPT)
    with pytest.raises(NbveneError, match="unknown method 'eapp'"):
        edge_scores(model, clean, corrupted, lambda x: x[:, 0], method="eapp")
    with pytest.raises(NbveneError, match="steps >= 1"):
        edge_scores(model, clean, corrupted, lambda x: x[:, 0], method="eap-ig", steps=0)
    with pytest.raises(NbveneError, match="one value per prompt"):
        edge_scores(model, clean, corrupted, lambda x: x[:, :2])


def test_scores_come_in_no_grad():
    model, tok = nv.models.tiny("gpt2", layers=1)
    clean, corrupted = inputs(tok, CLEAN), inputs(tok, CORRUPT)
    with torch.no_grad():
        scores = edge_scores(model, clean, corrupted, lambda x: x[:, 5], method="eap-ig")
    assert scores.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
