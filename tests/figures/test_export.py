"""Export: the Altair chart shows what the SVG shows (palette, centre, facets, tooltips), the
PNG is rendered offline by vl-convert, and the HTML page needs nothing from the network."""

from __future__ import annotations

import re
import struct
import sys

import pytest

import nbvene as nv
from nbvene.figures import PALETTE, scale

PATCH = 'base: "a b c"\nsource: "a b d"\npatch: block_output layer=* pos=*\n'
HEX = ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in PALETTE]
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture(scope="module")
def trace():
    """Three panels over layer × pos; the tiny tokenizer splits "Eiffel" into "E", "if", "fel"
    (a token "if" once broke Vega's label expressions)."""
    model, tok = nv.models.tiny("llama", layers=2)
    return nv.causal_trace(
        "The Eiffel Tower is in",
        subject="The Eiffel",
        target=" Paris",
        model=model,
        tokenizer=tok,
        samples=1,
        window=1,
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_altair_heatmap_uses_the_palette_centre_and_tooltips(built):
    pytest.importorskip("altair")
    res = built([[0.5, -2.0, 1.0], [1.0, 0.25, 0.0]], {"layer": [0, 1], "pos": ["a", " b", " c"]})
    spec = res.to_altair().to_dict()
    assert spec["mark"]["type"] == "rect"
    enc = spec["encoding"]
    assert (enc["x"]["field"], enc["y"]["field"], enc["color"]["field"]) == ("col", "row", "value")
    assert (enc["x"]["title"], enc["y"]["title"]) == ("layer", "pos")  # tokens down the side
    colour = enc["color"]["scale"]
    lo, mid, hi = scale(res)
    assert (lo, mid, hi) == (-2.0, 0.0, 1.0)  # the values' span, diverging at 0
    # the ramp's ends sit one slope (the larger side) from the centre: -2 and 2
    assert colour["domain"][0] == lo and colour["domain"][5] == mid and colour["domain"][-1] == 2.0
    assert colour["range"] == HEX and colour["interpolate"] == "rgb"
    assert [t["field"] for t in enc["tooltip"]] == ["layer", "pos", "token", "value", "meaning"]
    rows = spec["data"]["values"]
    assert len(rows) == 6
    cell = next(r for r in rows if r["layer"] == "0" and r["pos"] == "1")
    assert cell["value"] == -2.0 and cell["token"] == "␣b"
    assert cell["meaning"] == 'patch block_output · layer 0 · pos 1 "␣b"'
    assert "centre 0 = both answers equally likely" in str(spec["title"])


def test_altair_facets_like_the_svg(trace):
    pytest.importorskip("altair")
    spec = trace.to_altair().to_dict()
    assert spec["facet"]["field"] == "facet" and spec["columns"] == 3
    assert spec["facet"]["sort"] == ["block", "mlp", "attention"]
    assert len(spec["data"]["values"]) == trace.values.numel()
    assert spec["spec"]["encoding"]["color"]["scale"]["domain"][5] == pytest.approx(
        float(trace.corrupted)
    )


def test_altair_token_strip_and_bars(built):
    pytest.importorskip("altair")
    tokens = built([0.5, -1.0], {"pos": ["<b>", " if"]}).to_altair().to_dict()
    marks = sorted(layer["mark"]["type"] for layer in tokens["layer"])
    assert marks == ["rect", "text"]
    assert [r["token"] for r in tokens["data"]["values"]] == ["<b>", "␣if"]
    bars = built([0.5, -1.0, 0.0], {"layer": [0, 1, 2]}).to_altair().to_dict()
    bar = next(layer for layer in bars["layer"] if layer["mark"]["type"] == "bar")
    assert bar["encoding"]["y2"] == {"datum": 0.0}  # bars grow from the centre


def test_collected_activations_have_no_chart(gpt2):
    pytest.importorskip("altair")
    model, tok = gpt2
    res = nv.run('base: "a b c"\ncollect: block_output layer=* pos=-1', model=model, tokenizer=tok)
    with pytest.raises(nv.NbveneError, match="no single value per cell"):
        res.to_altair()


def test_save_png_renders_offline(trace, tmp_path):
    pytest.importorskip("vl_convert")
    path = tmp_path / "trace.png"
    trace.save_png(path)
    width, height = png_size(path.read_bytes())
    # three panels of 2 layers side by side, 7 token rows, a title and a legend, at scale 2
    assert 400 < width < 3000 and 300 < height < 3000
    trace.save_png(tmp_path / "small.png", scale=1)
    small = png_size((tmp_path / "small.png").read_bytes())
    assert small == pytest.approx((width / 2, height / 2), abs=2)


MISSING = [("altair", "altair"), ("vl_convert", "vl-convert-python")]


@pytest.mark.parametrize(("module", "package"), MISSING)
def test_a_missing_package_is_named(trace, tmp_path, monkeypatch, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    path = tmp_path / "x.png"
    with pytest.raises(nv.NbveneError, match=f"pip install {re.escape(package)}"):
        trace.save_png(path)
    assert not path.exists()  # no empty file left behind


def test_save_html_is_self_contained(built, tmp_path):
    tokens = ["<script>alert(1)</script>", " <img onerror=x>", " c"]
    res = built([[0.1, 0.2, 0.3]], {"layer": [0], "pos": tokens})
    path = tmp_path / "page.html"
    res.save_html(path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and res.to_svg() in page
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {SVG_NAMESPACE}  # a name, not fetched
    assert not re.search(r"<script|<img|<link|\bsrc=|@import", page, re.IGNORECASE)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('class="cell"') == 3
    assert "patch: block_output layer=* pos=*" in page  # the spec that made it
