"""The static SVG figures: well-formed, one addressable rect per cell coloured by the shared
palette, facets, tooltips, and token text that stays text."""

from __future__ import annotations

import base64
import itertools
import math
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
import torch

import nbvene as nv
from nbvene.figures import MISSING, PALETTE, colour, scale, svg, visible

SVG = "{http://www.w3.org/2000/svg}"
PATCH = 'base: "a b c"\nsource: "a b d"\npatch: block_output layer=* pos=*\n'
RESTORE = 'base: "a b c"\ncorrupt: noise 3σ on "a"\nrestore: block_output layer=* pos=*\n'
HOSTILE = ["<script>alert(1)</script>", ' <img src=x onerror="alert(2)">', " a&b\x00\x1b", "\n"]


def parse(result) -> ET.Element:
    root = ET.fromstring(svg(result))  # raises on anything but well-formed XML
    assert root.tag == f"{SVG}svg"
    return root


def cells(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "cell"]


def title(element: ET.Element) -> str:
    return element.find(f"{SVG}title").text


def test_layer_by_pos_has_one_addressable_rect_per_cell(gpt2):
    model, tok = gpt2
    res = nv.run(PATCH + 'metric: logit_diff(" c", " d")', model=model, tokenizer=tok)
    rects = cells(parse(res))
    layers, tokens = res.values.shape
    assert len(rects) == layers * tokens
    seen = {(int(r.get("data-layer")), int(r.get("data-pos"))): r for r in rects}
    assert set(seen) == set(itertools.product(range(layers), res.axes[1].positions))
    for (layer, pos), rect in seen.items():
        value = float(res.values[layer, pos])
        assert float(rect.get("data-value")) == pytest.approx(value, rel=1e-6, abs=1e-9)
        assert rect.get("fill") == colour(value, scale(res))
        assert f"{value:.7g}" in title(rect)


def test_colours_are_centred_on_the_corrupted_baseline(built):
    # a restore: the cell equal to the corrupted run is white, the farthest one a darkest stop
    res = built(
        [[0.2, 0.5, 0.9]],
        {"layer": [0], "pos": ["a", " b", " c"]},
        spec=RESTORE,
        metric='p(" c")',
        corrupted=0.5,
        clean=0.8,
    )
    fills = {r.get("data-pos"): r.get("fill") for r in cells(parse(res))}
    assert fills["1"] == "#{:02x}{:02x}{:02x}".format(*PALETTE[5])
    assert fills["2"] == "#{:02x}{:02x}{:02x}".format(*PALETTE[-1])  # 0.4 above: the far end
    assert fills["0"] == colour(0.2, scale(res))  # 0.3 below: blue, not the darkest
    assert fills["0"] not in ("#{:02x}{:02x}{:02x}".format(*PALETTE[0]), fills["1"])


def test_a_real_restore_paints_its_baseline_white(gpt2):
    model, tok = gpt2
    res = nv.run(RESTORE + 'metric: p(" c")', model=model, tokenizer=tok)
    s = scale(res)
    for rect in cells(parse(res)):
        assert rect.get("fill") == colour(float(rect.get("data-value")), s)
    legend = svg(res)
    assert f"centre {s.centre:.4g} = corrupted baseline" in legend


def test_causal_trace_has_three_facets_side_by_side():
    model, tok = nv.models.tiny("llama", layers=2)
    res = nv.causal_trace(
        "The Eiffel Tower is in",
        subject="The Eiffel",
        target=" Paris",
        model=model,
        tokenizer=tok,
        samples=1,
        window=1,
    )
    root = parse(res)
    facets = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "facet"]
    assert facets == ["block", "mlp", "attention"]
    rects = cells(root)
    assert len(rects) == res.values.numel()
    panels = [r.get("data-panel") for r in rects]
    assert panels == [
        p for p in ("block", "mlp", "attention") for _ in range(res.values[0].numel())
    ]
    # side by side: the three panels' first cells share a row and step to the right
    firsts = [
        next(r for r in rects if r.get("data-panel") == p) for p in ("block", "mlp", "attention")
    ]
    assert len({r.get("y") for r in firsts}) == 1
    xs = [float(r.get("x")) for r in firsts]
    assert xs == sorted(xs) and len(set(xs)) == 3
    assert "restore mlp" in title(next(r for r in rects if r.get("data-panel") == "mlp"))


def test_layers_by_heads_and_heads_by_tokens(built):
    heads = built([[0.1, -0.2], [0.3, 0.0], [0.5, 0.25]], {"layer": [0, 1, 2], "head": [0, 1]})
    rects = cells(parse(heads))
    assert len(rects) == 6 and {r.get("data-head") for r in rects} == {"0", "1"}
    # layers down the side, heads across
    r12 = next(r for r in rects if r.get("data-layer") == "1" and r.get("data-head") == "1")
    r02 = next(r for r in rects if r.get("data-layer") == "0" and r.get("data-head") == "1")
    assert float(r12.get("y")) > float(r02.get("y")) and r12.get("x") == r02.get("x")
    # heads × tokens: tokens down the side even when they come second
    by_tokens = built(
        [[0.1, -0.2, 0.4], [0.3, 0.0, 0.2]], {"head": [0, 1], "pos": ["x", " y", " z"]}
    )
    rects = cells(parse(by_tokens))
    h0 = {r.get("data-pos"): r for r in rects if r.get("data-head") == "0"}
    assert len({h0[p].get("x") for p in h0}) == 1 and len({h0[p].get("y") for p in h0}) == 3


def test_hostile_tokens_render_as_text(built):
    tokens = ["ok", *HOSTILE]
    res = built([[0.1] * len(tokens)], {"layer": [0], "pos": tokens})
    document = svg(res)
    root = ET.fromstring(document)
    tags = {e.tag for e in root.iter()}
    assert f"{SVG}script" not in tags and f"{SVG}img" not in tags and "script" not in tags
    labels = [t for t in root.iter(f"{SVG}text") if t.get("class") == "row-label"]
    shown = ["".join(t.itertext()) for t in labels]
    assert any("<script>alert(1)</script>" in s for s in shown)  # as text, escaped in the file
    assert "<script>" not in document and "&lt;script&gt;" in document
    assert any("␣<img" in s for s in shown) and any("↵" in s for s in shown)
    assert any("a&b\\x00\\x1b" in s for s in shown)  # control characters become escapes


def test_token_view_for_a_result_over_positions(gpt2):
    model, tok = gpt2
    res = nv.run(
        'base: "a <b> c"\nsource: "a <b> d"\npatch: block_output layer=1 pos=*\n'
        'metric: logit_diff(" c", " d")',
        model=model,
        tokenizer=tok,
    )
    root = parse(res)
    assert root.get("data-kind") == "tokens"
    rects = cells(root)
    assert [int(r.get("data-pos")) for r in rects] == list(res.axes[0].positions)
    written = [
        t.text for t in root.iter(f"{SVG}text") if t.get("font-family", "").endswith("monospace")
    ]
    assert written == [visible(t) for t in res.axes[0].labels]
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "token"]
    assert "patch block_output · layer" not in title(groups[0])  # the layer is fixed, not swept
    assert title(groups[0]).startswith('patch block_output · pos 0 "a"')


def test_bars_for_one_other_axis_and_a_scalar(built):
    res = built([0.5, -1.0, 0.0], {"layer": [0, 1, 2]})
    root = parse(res)
    assert root.get("data-kind") == "bars"
    bars = {r.get("data-layer"): r for r in cells(root)}
    assert set(bars) == {"0", "1", "2"}
    # centred at 0: the positive bar ends at the zero line, the negative one starts there
    up, down = bars["0"], bars["1"]
    assert float(up.get("y")) + float(up.get("height")) == pytest.approx(float(down.get("y")))
    assert float(down.get("height")) == pytest.approx(2 * float(up.get("height")), rel=0.02)
    scalar = built(0.25, {})
    assert len(cells(parse(scalar))) == 1


def test_collected_activations_fall_back_to_text(gpt2):
    model, tok = gpt2
    res = nv.run('base: "a b c"\ncollect: block_output layer=* pos=-1', model=model, tokenizer=tok)
    root = parse(res)
    assert root.get("data-kind") == "text" and not cells(root)
    assert "Result(collect" in "".join(root.itertext())


def test_missing_values_are_grey_and_say_so(built):
    res = built([[math.nan, 1.0]], {"layer": [0], "pos": ["a", " b"]})
    nan_cell = next(r for r in cells(parse(res)) if r.get("data-pos") == "0")
    assert nan_cell.get("fill") == MISSING and "no value" in title(nan_cell)


def test_visible_whitespace():
    assert visible(" Paris\n") == "␣Paris↵"
    assert visible("\ta\r") == "⇥a␍"
    assert visible("x\x07") == "x\\x07"


def test_large_heatmaps_keep_their_data_as_a_compact_image(built):
    small = parse(built([[0.0] * 20] * 20, {"layer": list(range(20)), "pos": ["x"] * 20}))
    assert all(title(r) for r in cells(small))  # 400 cells: a rect and tooltip each
    tokens = ["x"] * 51
    values = torch.linspace(-1, 1, 5100).reshape(100, 51)
    res = built(values.tolist(), {"layer": list(range(100)), "pos": tokens})
    large = parse(res)
    assert cells(large) == []
    (image,) = large.iter(f"{SVG}image")
    rows, cols = map(int, image.get("data-shape").split())
    assert (rows, cols) == (51, 100)  # tokens down the side, layers across
    kept = np.frombuffer(base64.b64decode(image.get("data-values")), dtype=np.float32)
    assert np.allclose(kept.reshape(rows, cols), values.T.numpy())
    # one pixel per cell, in the palette's colour of that cell's value
    png = base64.b64decode(image.get("href").split(",", 1)[1])
    pixels = _png_pixels(png, cols, rows)
    s = scale(res)
    for r, c in ((0, 0), (7, 42), (50, 99)):
        assert "#{:02x}{:02x}{:02x}".format(*pixels[r][c]) == colour(float(values[c, r]), s)


def _png_pixels(png: bytes, width: int, height: int) -> list[list[tuple[int, int, int]]]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    data, at = b"", 8
    while at < len(png):
        (n,) = struct.unpack(">I", png[at : at + 4])
        if png[at + 4 : at + 8] == b"IDAT":
            data += png[at + 8 : at + 8 + n]
        at += 12 + n
    raw = zlib.decompress(data)
    stride = 1 + 3 * width
    return [
        [tuple(raw[r * stride + 1 + 3 * c : r * stride + 4 + 3 * c]) for c in range(width)]
        for r in range(height)
    ]


def test_a_32_layer_200_token_trace_stays_compact():
    """The stored figure of a large trace: three panels of 32 layers × 200 tokens."""
    import nbvene as nv
    from nbvene.results import Axis

    toks = [f" t{i}" for i in range(200)]
    spec = nv.parse(RESTORE + 'metric: p(" c")')
    res = nv.Result(
        torch.rand(3, 32, 200, generator=torch.Generator().manual_seed(0)),
        (Axis("panel", ("block", "mlp", "attention")), Axis("layer", range(32)), Axis("pos", toks)),
        spec,
        'p(" c")',
        torch.tensor([0.9]),
        torch.tensor([0.05]),
    )
    assert len(svg(res).encode()) < 250_000
    assert len(svg(res.slice(0)).encode()) < 125_000
    # and a 30 layers × 45 tokens one, the size of the measured trace
    small = nv.Result(
        res.values[:, :30, :45],
        (res.axes[0], Axis("layer", range(30)), Axis("pos", toks[:45])),
        spec,
        'p(" c")',
        res.clean,
        res.corrupted,
    )
    assert len(svg(small).encode()) < 100_000
