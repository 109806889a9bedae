"""The circuit graph widget's state as the kernel sends it: arrays as binary buffers that decode
to the Circuit's own edges, scores, kept edges and node scores; the slider's sizes from the curve;
one widget per Circuit; no widget view outside a kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nbvene.circuits.graph import KINDS, PORTS
from nbvene.circuits.layout import layout
from nbvene.circuits.widget import CircuitGraph, mimebundle, view
from nbvene.widgets.transport import decode
from tests.circuits.test_result import fake_circuit


def test_state_is_the_circuit_in_buffers():
    circ = fake_circuit(3, 2, keep=10)
    g = CircuitGraph(circ)
    names = list(circ.nodes)
    assert g.nodes == [n.name for n in names]
    for trait in ("node_info", "node_boxes", "node_scores", "edges", "scores", "kept"):
        assert isinstance(getattr(g, trait)["data"], bytes), trait
    info = decode(g.node_info)
    assert [tuple(r) for r in info.tolist()] == [
        (n.layer, KINDS.index(n.kind), -1 if n.head is None else n.head) for n in names
    ]
    words = decode(g.edges).view(np.uint32).tolist()  # sender << 17 | receiver << 2 | port
    assert [
        f"{g.nodes[w >> 17]} -> {g.nodes[(w >> 2) & 0x7FFF]}"
        + ("" if PORTS[w & 3] == "in" else f".{PORTS[w & 3]}")
        for w in words
    ] == [e.name for e in circ.edges]
    assert np.array_equal(decode(g.scores), circ.scores.numpy())
    assert decode(g.kept).tolist() == sorted(circ.edges.index(e) for e in circ.kept)
    assert g.kept_size == g.size == 10
    assert decode(g.node_scores).tolist() == pytest.approx(list(circ.nodes.values()))
    placed, width, height = layout(names)
    assert decode(g.node_boxes)[0].tolist() == pytest.approx(
        [placed[names[0]].x, placed[names[0]].y, placed[names[0]].width, placed[names[0]].height]
    )
    assert (g.width, g.height) == (width, height)
    assert g.sizes == [2, 5, 10, 20, len(circ.edges)]
    assert g.faithfulness == 0.91
    assert g.scale == [-g.scale[2], 0.0, g.scale[2]]
    assert g.scale[2] == pytest.approx(circ.scores.abs().max().item())


def test_unmeasured_size_and_no_curve():
    circ = fake_circuit(2, 2, keep=10).top(7)
    g = CircuitGraph(circ)
    assert g.faithfulness is None and math.isnan(circ.faithfulness)
    assert 7 in g.sizes  # the circuit's own size is a stop of the slider
    circ.curve = []
    assert CircuitGraph(circ).sizes == []  # every size, 1 … number of edges


def test_one_widget_per_circuit_and_none_outside_a_kernel():
    circ = fake_circuit()
    assert view(circ) is view(circ)
    assert view(circ) is not view(fake_circuit())
    assert mimebundle(circ) == ({}, {})


def test_a_gpt2_sized_graph_stores_small():
    g = CircuitGraph(fake_circuit(12, 12, keep=200))
    stored = sum(
        len(v["data"]) for v in g.get_state().values() if isinstance(v, dict) and "data" in v
    )
    assert stored < 300_000  # 32k edges: one word and one float each
