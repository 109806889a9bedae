"""The heatmap and token view front ends in Chromium with a fake anywidget model: cells and
their data attributes, colours equal to the static figures', legend, tooltips, click -> model,
live filling, Stop, escaping."""

import pytest
import torch

import nbvene as nv
from nbvene.figures.palette import MISSING, colour, scale
from nbvene.results import Axis
from nbvene.widgets import Heatmap, TokenView

BACKGROUNDS = "es => es.map(e => getComputedStyle(e).backgroundColor)"


def cell(page, **at):
    """The heatmap cell at data-layer/data-pos/... values."""
    attrs = "".join(f'[data-{k}="{v}"]' for k, v in at.items())
    return page.locator(f"[data-testid=heatmap-cell]{attrs}")


def rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.fixture(scope="module")
def tiny():
    return nv.models.tiny("gpt2")  # kept alive here: a Result holds its model only weakly


@pytest.fixture(scope="module")
def res(tiny):
    model, tok = tiny
    return nv.run(
        'base: "The <script>x</script> <img src=x onerror=window.pwned=1> is in"\n'
        'corrupt: noise 3σ on "The"\nrestore: block_output layer=* pos=*\nmetric: p(" Paris")',
        model=model,
        tokenizer=tok,
    )


def test_cells_colours_legend_and_labels(mount, page, res, artifacts):
    hm = Heatmap(res)
    mount(hm, "heatmap")
    cells = page.get_by_test_id("heatmap-cell")
    layers, tokens = res.values.shape
    assert cells.count() == layers * tokens
    sc = scale(res)
    for layer in range(layers):
        for pos in range(tokens):
            want = colour(float(res.values[layer, pos]), sc)  # the static figures' colour
            assert cell(page, layer=layer, pos=pos).evaluate_all(BACKGROUNDS) == [rgb(want)]
    ticks = page.get_by_test_id("legend-tick")
    assert [float(t) for t in ticks.evaluate_all("ts => ts.map(t => t.dataset.value)")] == hm.ticks
    assert page.get_by_test_id("legend-title").inner_text() == res.metric
    assert "centre" in page.get_by_test_id("heatmap-legend").inner_text()
    labels = page.get_by_test_id("heatmap-rowlabel")
    assert labels.all_inner_texts() == [t.replace(" ", "␣") for t in res.axes[1].labels]
    assert labels.nth(1).get_attribute("title").startswith("position 1:")
    page.locator(".harness-widget").screenshot(path=artifacts / "harness_heatmap.png")
    assert page.errors == []


EVIL = ["<script>window.pwned=1</script>", " <img src=x onerror=window.pwned=2>", " in"]


def evil(res):
    """The result with token texts that would run script if inserted as HTML."""
    v = res.values[:, :3]
    return nv.Result(
        v,
        (res.axes[0], Axis("pos", EVIL, (0, 1, 2))),
        res.spec,
        res.metric,
        res.clean,
        res.corrupted,
    )


def test_token_text_is_escaped(mount, page, res):
    mount(Heatmap(evil(res)), "heatmap")
    cell(page, pos=1).first.hover()
    texts = page.get_by_test_id("heatmap-rowlabel").all_inner_texts()
    assert texts == [t.replace(" ", "␣") for t in EVIL]
    assert page.locator(".nbvene-heatmap script, .nbvene-heatmap img").count() == 0
    assert "<img src=x onerror" in page.get_by_test_id("heatmap-tip").inner_text()
    page.wait_for_timeout(100)
    assert page.evaluate("window.pwned") is None and page.errors == []


def test_tooltip_has_exact_value_and_meaning(mount, page, res):
    mount(Heatmap(res), "heatmap")
    cell(page, layer=1, pos=2).hover()
    tip = page.get_by_test_id("heatmap-tip")
    assert tip.is_visible()
    value = float(page.get_by_test_id("heatmap-tip-value").inner_text().split("= ")[1])
    assert value == pytest.approx(float(res.values[1, 2]), rel=1e-6, abs=1e-9)
    assert "pos 2" in tip.inner_text() and "layer 1" in tip.inner_text()
    assert "block_output restored at this cell" in tip.inner_text()


def test_click_sets_selected_once_and_shows_the_kernels_answer(mount, page, res, artifacts):
    hm = Heatmap(res)
    mount(hm, "heatmap")
    cell(page, layer=0, pos=3).click()
    saved = page.evaluate("window.__w.rec.saved")
    assert len(saved) == 1 and saved[0]["selected"] == {"facet": 0, "row": 3, "col": 0, "n": 1}
    assert page.get_by_test_id("heatmap-detail").inner_text() == "computing…"
    # the real Python widget answers the same click; its answer goes back to the browser
    hm.set_state({"selected": saved[0]["selected"]})
    assert hm.detail["status"] == "ready"
    page.evaluate("d => pySet('detail', d)", hm.detail)
    detail = page.get_by_test_id("heatmap-detail")
    assert page.get_by_test_id("detail-patched-token").count() == 5
    shown = float(page.get_by_test_id("detail-patched-metric").inner_text().split("= ")[1])
    assert shown == pytest.approx(hm.detail["patched"]["metric"], rel=1e-6)
    assert "clean run" in detail.inner_text() and "corrupted run" in detail.inner_text()
    sel = page.locator(".nv-cell.nv-selected")
    assert sel.count() == 1 and sel.get_attribute("data-pos") == "3"
    page.locator(".harness-widget").screenshot(path=artifacts / "harness_heatmap_click.png")


def test_live_cells_fill_in_and_stop_is_sent(mount, page, res):
    empty = nv.Result(
        torch.full_like(res.values, float("nan")),
        res.axes,
        res.spec,
        res.metric,
        res.clean,
        res.corrupted,
    )
    hm = Heatmap(empty)
    hm.stoppable = True
    hm.progress = {"state": "running", "done": 0, "total": 14, "eta": None}
    mount(hm, "heatmap")
    cells = page.get_by_test_id("heatmap-cell")
    grey = rgb(MISSING)
    assert set(cells.evaluate_all(BACKGROUNDS)) == {grey}
    # the kernel sends the first chunk: layer 0 is filled
    half = empty.values.clone()
    half[0] = res.values[0]
    hm.show(nv.Result(half, res.axes, res.spec, res.metric, res.clean, res.corrupted))
    hm.progress = {"state": "running", "done": 7, "total": 14, "eta": 3.2}
    from tests.widgets.conftest import js_state

    state = js_state(hm)
    page.evaluate(
        "s => { pySet('scale', s.scale); pySet('values', s.values); "
        "pySet('progress', s.progress); }",
        state,
    )
    layer0, layer1 = cell(page, layer=0), cell(page, layer=1)
    assert grey not in layer0.evaluate_all(BACKGROUNDS)
    assert set(layer1.evaluate_all(BACKGROUNDS)) == {grey}
    progress = page.get_by_test_id("heatmap-progress-text").inner_text()
    assert "7 of 14 runs · about 4 s left" in progress
    layer1.first.click()  # not run yet: nothing is asked of the kernel
    layer0.first.click()  # the sweep still runs: the model is busy
    assert page.evaluate("window.__w.rec.saved") == []
    page.get_by_test_id("heatmap-stop").click()
    saved = page.evaluate("window.__w.rec.saved")
    assert len(saved) == 1 and saved[0]["stop"] is True
    assert page.get_by_test_id("heatmap-stop").is_disabled()


def test_without_routing_the_widget_says_to_interrupt(mount, page, res):
    hm = Heatmap(res)
    hm.progress = {"state": "running", "done": 2, "total": 14}
    mount(hm, "heatmap")
    assert not page.get_by_test_id("heatmap-stop").is_visible()
    assert "interrupt the kernel" in page.get_by_test_id("heatmap-progress-text").inner_text()


def test_facets_side_by_side(mount, page, res):
    three = nv.Result(
        torch.stack([res.values, -res.values, res.values * 0]),
        (Axis("panel", ("block", "mlp", "attention")), *res.axes),
        res.spec,
        res.metric,
        res.clean,
        res.corrupted,
    )
    mount(Heatmap(three), "heatmap")
    facets = page.get_by_test_id("heatmap-facet")
    assert facets.count() == 3
    boxes = [facets.nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"] and boxes[0]["x"] < boxes[1]["x"]
    assert page.locator('[data-panel="mlp"]').count() == res.values.numel()


def test_token_view_colours_and_escapes(mount, page, res, artifacts):
    tv = TokenView(res, layer=1)
    mount(tv, "tokens")
    toks = page.get_by_test_id("token")
    assert toks.count() == res.values.shape[1]
    sc = scale(res)
    for i in range(toks.count()):
        bg = toks.nth(i).evaluate("e => getComputedStyle(e).backgroundColor")
        assert bg == rgb(colour(float(res.values[1, i]), sc))
    page.evaluate("s => pySet('tokens', s)", EVIL)
    assert page.locator(".nbvene-tokens script, .nbvene-tokens img").count() == 0
    assert page.get_by_test_id("token").all_inner_texts()[:3] == [t.replace(" ", "␣") for t in EVIL]
    assert page.evaluate("window.pwned") is None
    assert toks.nth(2).get_attribute("title").startswith("pos 2 ")
    page.locator(".harness-widget").screenshot(path=artifacts / "harness_tokens.png")
