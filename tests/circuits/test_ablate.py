"""Ablation and faithfulness: prompts as Inputs, pairs that cannot be patched, the
faithfulness convention, and a model left as it was found after any error."""

from __future__ import annotations

import pytest
import torch
from faults import Passes, Snapshot, on_call

import nbvene as nv
from nbvene.circuits import (
    Edge,
    Inputs,
    Node,
    acdc,
    curve,
    edge_metric,
    edge_scores,
    faithfulness,
    graph_of,
    inputs,
)
from nbvene.errors import NbveneError

CLEAN = ["When John and Mary went to the store, John gave", "The cat sat on the mat and the"]
CORRUPT = ["When John and Mary went to the store, Mary gave", "The cat sat on the rug and the"]


@pytest.fixture(scope="module")
def gpt2():
    model, tok = nv.models.tiny("gpt2", layers=2)
    token = tok(" a")["input_ids"][0]
    return model, tok, inputs(tok, CLEAN), inputs(tok, CORRUPT), lambda x: x[:, token]


def test_inputs_read_the_last_real_token(gpt2):
    _, tok, clean, _, _ = gpt2
    lengths = [len(tok(text)["input_ids"]) for text in CLEAN]
    assert clean.read.tolist() == [n - 1 for n in lengths]
    assert clean.ids.shape == (2, max(lengths)) and clean.texts == tuple(CLEAN)
    made = Inputs.of(torch.tensor([5, 6, 7]))
    assert made.ids.shape == (1, 3) and made.read.tolist() == [2]
    padded = Inputs.of(torch.tensor([[5, 6, 0]]), torch.tensor([[1, 1, 0]]))
    assert padded.read.tolist() == [1]


def test_pairs_of_different_lengths_are_named(gpt2):
    model, tok, clean, _, metric = gpt2
    longer = inputs(tok, [CORRUPT[0], "The cat sat on the mat and then the"])
    with pytest.raises(NbveneError, match="pair 1 differ in length") as error:
        edge_metric(model, clean, longer, metric, [])
    assert "'The cat sat on the mat and then the'" in str(error.value)
    with pytest.raises(NbveneError, match="2 clean prompts but 1 corrupted"):
        edge_scores(model, clean, inputs(tok, CORRUPT[:1]), metric)
    with pytest.raises(NbveneError, match="at least one prompt"):
        inputs(tok, [])


def test_faithfulness_runs_from_corrupted_to_full(gpt2):
    model, _, clean, corrupted, metric = gpt2
    edges = graph_of(model)
    assert faithfulness(model, clean, corrupted, metric, edges) == pytest.approx(1.0)
    assert faithfulness(model, clean, corrupted, metric, []) == pytest.approx(0.0, abs=1e-6)
    half = faithfulness(model, clean, corrupted, metric, edges[::2])
    m = [edge_metric(model, clean, corrupted, metric, k) for k in (edges[::2], edges, [])]
    assert half == pytest.approx((m[0] - m[2]) / (m[1] - m[2]), abs=1e-5)


def test_bad_edges_and_ablations_are_nbvene_errors(gpt2):
    model, _, clean, corrupted, metric = gpt2
    with pytest.raises(NbveneError, match="unknown ablation 'zero'"):
        edge_metric(model, clean, corrupted, metric, [], ablation="zero")
    backwards = Edge(Node(1, "mlp"), Node(0, "head", 0), "q")
    with pytest.raises(NbveneError, match=r"m1 -> a0.h0.q is not an edge"):
        edge_metric(model, clean, corrupted, metric, [backwards])
    with pytest.raises(NbveneError, match="same metric"):
        faithfulness(model, clean, clean, metric, [])


def raising_metric(logits):
    raise RuntimeError("metric failed")


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_hooks_are_removed_after_a_failing_metric(gpt2, method):
    model, _, clean, corrupted, _ = gpt2
    snapshot = Snapshot(model)
    with pytest.raises(RuntimeError, match="metric failed"):
        edge_scores(model, clean, corrupted, raising_metric, method=method)
    snapshot.assert_clean()


def test_hooks_are_removed_after_a_failing_forward(gpt2):
    """A forward pass failing inside a block, in every pass of every function that runs the
    model (the reference runs, the clean run with gradients, the edge-patched runs)."""
    model, _, clean, corrupted, metric = gpt2
    snapshot = Snapshot(model)
    block = model.transformer.h[1]
    edges = graph_of(model)
    runs = [
        (lambda: edge_scores(model, clean, corrupted, metric, method="eap-ig"), 3),
        (lambda: faithfulness(model, clean, corrupted, metric, edges[:5]), 2),
        (lambda: curve(model, clean, corrupted, metric, edges, [1, 2, 3]), 3),
        (lambda: acdc(model, clean, corrupted, metric, tau=0.1), 5),
    ]
    for run, passes in runs:
        for call in range(1, passes + 1):
            boom = on_call(call, error=lambda: RuntimeError("boom"))
            with Passes(block, boom), pytest.raises(RuntimeError, match="boom"):
                run()
            snapshot.assert_clean()
