"""The Circuit result made by hand (a few layers of fake edges with scores): its tidy frame and
ranks, top(k) and at(n), node scores, JSON save/load, the summary, and the static SVG (well
formed, labels that never overlap, a title that says what the figure shows)."""

from __future__ import annotations

import itertools
import json
import math
import xml.etree.ElementTree as ET

import pytest
import torch

from nbvene.circuits import Circuit, Edge, Node
from nbvene.circuits.layout import CHAR, FONT
from nbvene.errors import NbveneError
from tests.outputs import static_svg

SVG = "{http://www.w3.org/2000/svg}"


def fake_edges(layers: int, heads: int) -> list[Edge]:
    """Every edge of a `layers`-block model with `heads` heads, in topological order: each
    writer (embedding, heads, MLPs) to every later reader (heads' q/k/v, MLPs, the logits)."""
    embed, logits = Node(-1, "embed"), Node(layers, "logits")
    writers = [embed]
    edges = []
    for layer in range(layers):
        block_heads = [Node(layer, "head", h) for h in range(heads)]
        for head, port in itertools.product(block_heads, "qkv"):
            edges += [Edge(w, head, port) for w in writers]
        writers = writers + block_heads
        mlp = Node(layer, "mlp")
        edges += [Edge(w, mlp) for w in writers]
        writers = [*writers, mlp]
    return edges + [Edge(w, logits) for w in writers]


def fake_circuit(layers: int = 3, heads: int = 2, keep: int = 10, seed: int = 0) -> Circuit:
    """A circuit of `keep` top edges of random scores, with a faithfulness curve measured at
    a few sizes (the kept size among them)."""
    edges = fake_edges(layers, heads)
    scores = torch.randn(len(edges), generator=torch.Generator().manual_seed(seed))
    curve = [(2, 0.31), (5, 0.62), (keep, 0.91), (20, 0.97), (len(edges), 1.0)]
    circuit = Circuit(
        edges,
        scores,
        [],
        math.nan,
        curve,
        method="eap",
        metric='logit_diff(" Paris", " Rome")',
        meta={"model": "fake", "layers": layers, "heads": heads},
    )
    return circuit.top(keep)


@pytest.fixture
def circ():
    return fake_circuit()


def test_fake_edges_are_topological():
    edges = fake_edges(3, 2)
    seen = set()
    for e in edges:
        assert e.receiver not in seen or e.receiver.kind != "head"
        seen.add(e.sender)
    assert len({e.name for e in edges}) == len(edges)


def test_frame_columns_ranks_and_kept(circ):
    frame = circ.to_pandas()
    assert list(frame.columns) == ["sender", "receiver", "port", "edge", "score", "rank", "kept"]
    assert len(frame) == len(circ.edges)
    assert frame["edge"].tolist() == [e.name for e in circ.edges]
    assert sorted(frame["rank"]) == list(range(1, len(frame) + 1))
    by_rank = frame.sort_values("rank")
    magnitudes = by_rank["score"].abs().tolist()
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert frame["score"].tolist() == pytest.approx(circ.scores.tolist())
    assert set(frame.loc[frame["kept"], "edge"]) == {e.name for e in circ.kept}
    assert set(by_rank["edge"].head(10)) == {e.name for e in circ.kept}
    first = frame.iloc[0]
    assert (first["sender"], first["receiver"], first["port"]) == ("embed", "a0.h0", "q")


def test_top_keeps_the_strongest_edges_and_reads_faithfulness_from_the_curve(circ):
    five = circ.top(5)
    strongest = sorted(range(len(circ.edges)), key=lambda i: -abs(circ.scores[i].item()))[:5]
    assert set(five.kept) == {circ.edges[i] for i in strongest}
    assert five.faithfulness == 0.62
    assert five.edges is circ.edges and five.curve == circ.curve
    five.meta["note"] = "mine"
    assert "note" not in circ.meta
    assert circ.faithfulness == 0.91 and len(circ.kept) == 10
    unmeasured = circ.top(7)
    assert math.isnan(unmeasured.faithfulness)
    assert "not measured at 7 edges" in repr(unmeasured) and ".at(n)" in repr(unmeasured)
    assert circ.top(0).kept == []
    with pytest.raises(NbveneError, match="between 0 and"):
        circ.top(len(circ.edges) + 1)


def test_at_picks_the_nearest_measured_size(circ):
    assert len(circ.at(6).kept) == 5 and circ.at(6).faithfulness == 0.62
    assert len(circ.at(15).kept) == 10  # a tie: the smaller
    bare = Circuit(circ.edges, circ.scores, circ.kept, 0.5)
    with pytest.raises(NbveneError, match="no faithfulness curve"):
        bare.at(3)


def test_node_scores_sum_outgoing_magnitudes(circ):
    nodes = circ.nodes
    a0h1 = Node(0, "head", 1)
    want = sum(
        abs(s) for e, s in zip(circ.edges, circ.scores.tolist(), strict=True) if e.sender == a0h1
    )
    assert nodes[a0h1] == pytest.approx(want)
    logits = Node(3, "logits")
    into = sum(
        abs(s)
        for e, s in zip(circ.edges, circ.scores.tolist(), strict=True)
        if e.receiver == logits
    )
    assert nodes[logits] == pytest.approx(into)
    assert list(nodes) == sorted(nodes)
    assert next(iter(nodes)) == Node(-1, "embed")
    assert len(nodes) == 1 + 3 * 2 + 3 + 1


def test_repr_is_one_paragraph(circ):
    text = repr(circ)
    assert "\n" not in text
    assert text.startswith('Circuit by eap on logit_diff(" Paris", " Rome") (fake): 10 of ')
    assert f"10 of {len(circ.edges)} edges kept" in text and "faithfulness 0.91" in text
    strongest = circ.to_pandas().sort_values("rank").iloc[0]["edge"]
    assert f"strongest: {strongest} (" in text


def test_save_load_round_trip(circ, tmp_path):
    circ.meta["prompts"] = ["The Eiffel Tower is in"]
    path = circ.save(tmp_path / "ioi.circuit.json")
    back = Circuit.load(path)
    assert back.edges == circ.edges and back.kept == circ.kept
    assert torch.equal(back.scores, circ.scores) and back.scores.dtype == torch.float32
    assert (back.faithfulness, back.curve) == (circ.faithfulness, circ.curve)
    assert (back.method, back.metric, back.spec, back.meta) == (
        circ.method,
        circ.metric,
        circ.spec,
        circ.meta,
    )
    unmeasured = circ.top(7)
    unmeasured.save(tmp_path / "u.json")
    assert math.isnan(Circuit.load(tmp_path / "u.json").faithfulness)
    assert not list(tmp_path.glob(".*.part"))  # written through a renamed temporary file


def test_load_refuses_what_is_not_a_circuit(circ, tmp_path):
    path = circ.save(tmp_path / "c.json")
    doc = json.loads(path.read_text())
    doc["edges"][0][2] = "x"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(NbveneError, match="not a valid saved Circuit"):
        Circuit.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something"}')
    with pytest.raises(NbveneError, match="is not a saved Circuit"):
        Circuit.load(tmp_path / "other.json")
    with pytest.raises(NbveneError, match="is missing"):
        Circuit.load(tmp_path / "none.json")


def test_save_refuses_meta_that_is_not_json(circ, tmp_path):
    circ.meta["tensor"] = torch.ones(2)
    with pytest.raises(NbveneError, match="meta cannot be saved as JSON"):
        circ.save(tmp_path / "c.json")
    assert not list(tmp_path.iterdir())


def boxes(root) -> list[tuple[str, float, float, float, float]]:
    """Every text's box (label, left, top, right, bottom) from its position, anchor and font."""
    found = []
    for group in root.iter(f"{SVG}g"):
        dx, dy = map(float, group.get("transform", "translate(0,0)")[10:-1].split(","))
        for t in group.iter(f"{SVG}text"):
            size = float(t.get("font-size", FONT))
            width = len(t.text) * CHAR * size / FONT
            x, y = float(t.get("x")) + dx, float(t.get("y")) + dy
            left = x - width / 2 if t.get("text-anchor") == "middle" else x
            found.append((t.text, left, y - size, left + width, y + 0.25 * size))
    return found


def overlaps(a, b) -> bool:
    return a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]


@pytest.mark.parametrize(("layers", "heads", "keep"), [(3, 2, 10), (6, 8, 120), (2, 1, 0)])
def test_svg_is_well_formed_and_labels_never_overlap(layers, heads, keep):
    circ = fake_circuit(layers, heads, keep=keep)
    text = circ.to_svg()
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    width, height = float(root.get("width")), float(root.get("height"))
    drawn = [p for p in root.iter(f"{SVG}path") if p.get("data-edge")]
    assert len(drawn) == keep
    assert {int(p.get("data-edge")) for p in drawn} == {circ.edges.index(e) for e in circ.kept}
    labels = boxes(root)
    nodes = {n for e in circ.kept for n in (e.sender, e.receiver)}
    assert sorted(t for t, *_ in labels if t in {n.name for n in nodes}) == sorted(
        n.name for n in nodes
    )
    for a, b in itertools.combinations(labels, 2):
        assert not overlaps(a, b), (a, b)
    for label in labels:
        assert label[1] >= 0 and label[3] <= width and label[4] <= height, label
    title = root.find(f"{SVG}title").text
    assert title.startswith("eap circuit · logit_diff(")
    assert f"{keep} of {len(circ.edges):,} edges · faithfulness 0.91" in title


def test_svg_escapes_text_and_stays_small():
    circ = fake_circuit(12, 12, keep=400)
    circ.metric = 'p("<script>")'
    text = circ.to_svg()
    ET.fromstring(text)
    assert "<script>" not in text
    assert "strongest 300 drawn" in text
    assert len(text.encode()) < 150_000


def test_mimebundle_outside_a_kernel_is_text_and_one_static_figure(circ):
    data = circ._repr_mimebundle_()
    assert set(data) == {"text/plain", "text/html"}
    assert data["text/plain"] == repr(circ)
    assert 'class="nbvene-result"' in data["text/html"]  # what the save hook recognises
    ET.fromstring(static_svg(data))
