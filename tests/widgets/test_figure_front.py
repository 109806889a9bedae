"""The heatmap front end in Chromium with a fake anywidget model, for what issue 16 asks of a
figure: keyboard and ARIA grid, the colour bar (ticks, title) through a live fill, facets that
name their component, the normalized click panel, zoom, transpose, export, one-axis bars and
a tooltip that stays inside the window."""

import itertools
import json
import pathlib

import pytest
import torch

import nbvene as nv
from nbvene.results import Axis
from nbvene.widgets import Heatmap
from tests.widgets.conftest import js_state


@pytest.fixture(scope="module")
def tiny():
    return nv.models.tiny("gpt2")  # kept alive here: a Result holds its model only weakly


@pytest.fixture(scope="module")
def trace(tiny):
    model, tok = tiny
    return nv.causal_trace(
        "The Eiffel Tower is in",
        subject="The Eiffel",
        target=" Paris",
        model=model,
        tokenizer=tok,
        samples=2,
        window=2,
    )


@pytest.fixture(scope="module")
def normalized(tiny):
    model, tok = tiny
    return nv.run(
        'base: "The Eiffel Tower is in"\ncorrupt: noise 3σ on "The Eiffel" samples=2\n'
        'restore: block_output layer=* pos=*\nmetric: logit_diff(" Paris", " Rome") normalized',
        model=model,
        tokenizer=tok,
    )


def focused(page) -> dict:
    return page.evaluate(
        "() => { const c = document.activeElement; return {row: +c.dataset.row, "
        "col: +c.dataset.col, facet: +c.dataset.facet, label: c.getAttribute('aria-label'), "
        "tabs: document.querySelectorAll('.nv-cell[tabindex=\"0\"]').length}; }"
    )


def test_keyboard_moves_between_cells_and_enter_asks_for_top_k(mount, page, normalized):
    hm = Heatmap(normalized)
    mount(hm, "heatmap")
    grid = page.locator("[role=grid]")
    assert grid.count() == 1 and grid.get_attribute("aria-label") == hm.title
    rows = page.locator("[role=grid] [role=row]")
    assert rows.count() == 1 + len(hm.row_labels)  # the column header and one row per token
    assert page.locator("[role=gridcell]").count() == normalized.values.numel()
    assert page.locator("[role=rowheader]").count() == len(hm.row_labels)
    page.locator("[role=gridcell][tabindex='0']").focus()  # one cell in the tab order
    assert focused(page)["row"] == 0 and focused(page)["col"] == 0
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    at = focused(page)
    assert (at["row"], at["col"], at["tabs"]) == (2, 1, 1)  # roving tabindex
    value = float(normalized.values[1, 2])  # layer 1, pos 2
    assert at["label"].startswith(f"pos 2 {json.dumps(hm.row_labels[2])} · layer 1: ")
    assert float(at["label"].rsplit("= ", 1)[1]) == pytest.approx(value, rel=1e-6)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # stops at the edge
    assert focused(page)["col"] == 0
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    saved = page.evaluate("window.__w.rec.saved")
    assert saved[-1]["selected"] == {"facet": 0, "row": 2, "col": 1, "n": 1}
    # the kernel's answer: 1 and 0 for the clean and corrupted runs, raw values beside
    hm.set_state({"selected": saved[-1]["selected"]})
    page.evaluate("d => pySet('detail', d)", hm.detail)
    clean = page.get_by_test_id("detail-clean-metric").inner_text()
    corrupted = page.get_by_test_id("detail-corrupted-metric").inner_text()
    assert clean.startswith(f"{normalized.metric} = 1 (raw ")
    assert corrupted.startswith(f"{normalized.metric} = 0 (raw ")
    assert float(clean.split("raw ")[1].rstrip(")")) == pytest.approx(float(normalized.clean))
    raw = float(corrupted.split("raw ")[1].rstrip(")"))
    assert raw == pytest.approx(float(normalized.corrupted), rel=1e-6)
    assert page.errors == []


def test_reclicking_a_cell_asks_again_and_a_second_view_keeps_its_own_selection(
    mount, page, normalized
):
    hm = Heatmap(normalized)
    mount(hm, "heatmap")
    state = js_state(hm)
    page.evaluate("s => mount('http://widgets.test/pkg/heatmap.js', null, s)", state)
    first, second = page.get_by_test_id("heatmap").nth(0), page.get_by_test_id("heatmap").nth(1)
    first.locator("[data-testid=heatmap-cell][data-layer='1'][data-pos='2']").click()
    first.locator("[data-testid=heatmap-cell][data-layer='1'][data-pos='2']").click()
    assert first.locator(".nv-selected").count() == 1
    assert second.locator(".nv-selected").count() == 0  # its own selection
    assert second.get_by_test_id("heatmap-detail").inner_text() == ""


def test_colour_bar_has_round_ticks_and_the_metric_as_title_and_holds_through_a_fill(
    mount, page, normalized
):
    empty = nv.Result(
        torch.full_like(normalized.values, float("nan")),
        normalized.axes,
        normalized.spec,
        normalized.metric,
        normalized.clean,
        normalized.corrupted,
    )
    hm = Heatmap(empty)
    mount(hm, "heatmap")

    def bar():
        ticks = page.get_by_test_id("legend-tick").evaluate_all(
            "ts => ts.map(t => [t.dataset.value, t.style.left])"
        )
        ramp = page.locator(".nv-ramp").evaluate("r => r.style.background")
        return ticks, ramp, page.get_by_test_id("legend-title").inner_text()

    before = bar()
    assert len(before[0]) >= 5 and before[2] == normalized.metric
    shown = page.locator(".nv-tick:not(.nv-tick-quiet)").evaluate_all(
        "ts => ts.map(t => { const b = t.getBoundingClientRect(); return [b.left, b.right]; })"
    )
    assert len(shown) >= 3 and all(a[1] <= b[0] for a, b in itertools.pairwise(shown))
    values = normalized.values.clamp(0, 1)  # a fill within the baselines
    for rows in (1, 3, len(values)):
        partial = torch.full_like(values, float("nan"))
        partial[:rows] = values[:rows]
        hm.show(
            nv.Result(partial, empty.axes, empty.spec, empty.metric, empty.clean, empty.corrupted)
        )
        state = js_state(hm)
        page.evaluate(
            "s => { pySet('scale', s.scale); pySet('ticks', s.ticks); pySet('values', s.values); }",
            state,
        )
        assert bar() == before


def test_each_facet_names_its_component_and_subject_tokens_are_marked(mount, page, trace):
    hm = Heatmap(trace)
    mount(hm, "heatmap")
    for panel, component in (
        ("block", "block_output"),
        ("mlp", "mlp_output (window 2)"),
        ("attention", "attention_output (window 2)"),
    ):
        page.locator(f"[data-testid=heatmap-cell][data-panel={panel}]").nth(3).hover()
        meaning = page.get_by_test_id("heatmap-tip-meaning").inner_text()
        assert meaning == f"{trace.metric} with {component} restored at this cell"
    marked = page.locator(".nv-facet").first.locator(".nv-rowlabel.nv-subject")
    assert marked.count() == len(hm.subject) == 4
    assert page.get_by_test_id("heatmap-title").inner_text() == hm.title


def test_zoom_transpose_and_export(mount, page, trace):
    hm = Heatmap(trace)
    mount(hm, "heatmap")
    size = lambda: page.locator(".nv-cell").first.bounding_box()["width"]  # noqa: E731
    before = size()
    page.get_by_test_id("heatmap-zoom-in").click()
    assert size() > before
    page.get_by_test_id("heatmap-zoom-out").click()
    page.get_by_test_id("heatmap-zoom-out").click()
    assert size() < before
    labels = page.locator(".nv-facet").first.get_by_test_id("heatmap-rowlabel")
    assert labels.count() == len(hm.row_labels)  # tokens down the side
    page.get_by_test_id("heatmap-transpose").click()
    assert labels.count() == len(hm.col_labels)  # layers down the side
    cell = page.locator("[data-testid=heatmap-cell][data-panel=mlp][data-layer='1'][data-pos='2']")
    assert float(cell.get_attribute("data-value")) == pytest.approx(float(trace.values[1, 1, 2]))
    for kind in ("svg", "png"):
        with page.expect_download() as got:
            page.get_by_test_id(f"heatmap-export-{kind}").click()
        path = got.value.path()
        data = pathlib.Path(path).read_bytes()
        assert got.value.suggested_filename.endswith(f".{kind}")
        if kind == "svg":
            assert data.startswith(b"<svg") and data.count(b"<rect") >= trace.values.numel()
        else:
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert page.errors == []


def test_one_axis_is_a_bar_chart_with_its_metric_as_header(mount, page, artifacts):
    spec = nv.parse(
        'base: "a b"\nsteer: block_output layer=1 by {v} * 0..8 step 2\nmetric: p(" a")'
    )
    res = nv.Result(
        torch.tensor([0.1, 0.3, 0.2, 0.6, 0.5]),
        (Axis("strength", (0, 2, 4, 6, 8)),),
        spec,
        'p(" a")',
        None,
        torch.tensor([0.2]),
    )
    mount(Heatmap(res), "heatmap")
    header = page.locator(".nv-bar-head")
    assert header.inner_text() == res.metric
    assert header.evaluate("h => h.scrollWidth <= h.clientWidth")  # not cut ("valu")
    widths = page.locator(".nv-bar").evaluate_all(
        "bs => bs.map(b => b.getBoundingClientRect().width)"
    )
    # bars from the base run (0.2) to each value: 0.6 is the longest, 0.2 the shortest
    assert widths.index(max(widths)) == 3 and widths.index(min(widths)) == 2
    assert page.get_by_test_id("heatmap-transpose").is_hidden()
    page.locator(".harness-widget").screenshot(path=artifacts / "harness_bars.png")


def test_tooltip_stays_inside_the_window(mount, page, trace):
    page.set_viewport_size({"width": 700, "height": 500})
    mount(Heatmap(trace), "heatmap")
    last = page.locator(".nv-facet").last.locator(".nv-cell").last
    last.scroll_into_view_if_needed()
    last.hover()
    box = page.get_by_test_id("heatmap-tip").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 700
    assert box["y"] >= 0 and box["y"] + box["height"] <= 500


def test_a_32_layer_200_token_trace_scrolls_with_sticky_headers(mount, page, artifacts):
    toks = [f" t{i}" for i in range(200)]
    spec = nv.parse(
        'base: "a"\ncorrupt: noise 3σ on "a"\nrestore: block_output layer=* pos=*\nmetric: p(" a")'
    )
    res = nv.Result(
        torch.rand(3, 32, 200, generator=torch.Generator().manual_seed(0)),
        (Axis("panel", ("block", "mlp", "attention")), Axis("layer", range(32)), Axis("pos", toks)),
        spec,
        'p(" a")',
        torch.tensor([0.9]),
        torch.tensor([0.05]),
    )
    mount(Heatmap(res), "heatmap")
    scroller = page.locator(".nv-scroll")
    box = scroller.bounding_box()
    assert box["height"] <= 0.7 * 800 + 1  # the grid scrolls inside the output
    assert page.locator(".nv-cell").first.bounding_box()["height"] <= 10  # starts small
    scroller.evaluate("s => { s.scrollTop = 1200; }")
    header = page.locator(".nv-facet").first.locator(".nv-collabel").first.bounding_box()
    assert abs(header["y"] - box["y"]) <= 2  # the layer header stays at the top
    label = page.locator(".nv-facet").first.get_by_test_id("heatmap-rowlabel").first
    assert label.bounding_box()["y"] < box["y"]  # the first token scrolled away under it
    legend = page.get_by_test_id("heatmap-legend").bounding_box()
    assert legend["y"] + legend["height"] <= box["y"]  # the colour bar stays in view, above
    page.locator(".harness-widget").screenshot(path=artifacts / "harness_large.png")
    assert page.errors == []
