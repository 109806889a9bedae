"""A causal trace's heatmap in a real JupyterLab, a real kernel and Debian's Chromium, in the
light and the Dark theme: every label readable (WCAG contrast ≥ 4.5:1 from the rendered
colours), the palette's centre not a glaring white on the dark page, and clicks answered from
the kept top-k without a forward pass (their time in the browser recorded, not asserted: no test
asserts on wall-clock time). Screenshots of both themes go to the artifacts folder (the
ones in docs/images come from this test)."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from tests.widgets.labserver import jupyter_lab

pytestmark = pytest.mark.lab
TIMEOUT = 90_000  # ms: a cold kernel and Lab on 2 busy CPUs

SETUP = """\
import torch
import nbvene as nv
model, tok = nv.models.tiny("gpt2")
passes = 0  # the model's forward passes: a click answered from the kept top-k runs none

def counted(module, args):
    global passes
    passes += 1

model.register_forward_pre_hook(counted)"""
TRACE = """\
res = nv.causal_trace("The Eiffel Tower is located in the city of", subject="The Eiffel Tower",
                      target=" Paris", model=model, tokenizer=tok, samples=2, window=2)
assert res.top is not None  # each cell's top-k, kept by the sweep
res"""
NORMALIZED = """\
norm = nv.run('''
base:    "The Eiffel Tower is located in the city of"
corrupt: noise 3σ on "The Eiffel Tower" samples=2
restore: block_output layer=* pos=*
metric:  p(" Paris") normalized
''', model=model, tokenizer=tok)
seen = passes
norm"""
LIVE = """\
import time
from IPython.display import display
from nbvene.widgets.live import LiveSweep

def fill():
    \"\"\"A live fill, batch by batch, whose values stay within the baselines (0 and 1).\"\"\"
    within = norm.values.clamp(0, 1)
    def at(values):
        return nv.Result(values, norm.axes, norm.spec, norm.metric, norm.clean, norm.corrupted)
    empty = torch.full_like(within, float("nan"))
    sweep = LiveSweep(nv.Result(empty, norm.axes, norm.spec, norm.metric), every=0.0)
    display(sweep.widget)
    time.sleep(1.0)
    layers, tokens = within.shape
    for pos in range(1, tokens + 1):
        part = empty.clone()
        part[:, :pos] = within[:, :pos]
        sweep(pos * layers, layers * tokens, at(part))
        time.sleep(0.4)
    sweep.finish(at(within), stopped=False)"""

# the rendered colour of an element's text, and of what is behind it (the first ancestor with
# an opaque background), as [r, g, b]
COLOURS = """els => els.map(e => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  let n = e, bg = null;
  while (n && n.nodeType === 1) {
    const c = rgb(getComputedStyle(n).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) { bg = c.slice(0, 3); break; }
    n = n.parentElement;
  }
  return {text: e.textContent, fg: rgb(getComputedStyle(e).color).slice(0, 3),
          bg: bg || [255, 255, 255]};
})"""

# click a cell and time until its top-k is drawn, inside the page
CLICK = """cell => new Promise((done) => {
  const root = cell.closest('.nbvene-heatmap');
  const detail = root.querySelector('[data-testid=heatmap-detail]');
  const t0 = performance.now();
  const seen = new MutationObserver(() => {
    if (detail.querySelectorAll('[data-testid=detail-patched-token]').length) {
      seen.disconnect();
      done(performance.now() - t0);
    }
  });
  seen.observe(detail, {childList: true, subtree: true});
  cell.click();
})"""


def backgrounds(locator) -> list[str]:
    return locator.evaluate_all("es => es.map(e => getComputedStyle(e).backgroundColor)")


def colour_bar(figure) -> dict:
    """What the colour bar shows: its title, its ticks (value, place), its ramp."""
    return {
        "title": figure.get_by_test_id("legend-title").inner_text(),
        "ticks": figure.get_by_test_id("legend-tick").evaluate_all(
            "ts => ts.map(t => [t.dataset.value, t.style.left])"
        ),
        "ramp": figure.locator(".nv-ramp").evaluate("r => r.style.background"),
    }


def luminance(rgb) -> float:
    def channel(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def notebook(path):
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in (SETUP, TRACE, NORMALIZED, LIVE)],
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        },
    )
    nbformat.write(nb, path)


def readable(figure) -> list[str]:
    """The labels of `figure` whose contrast with their background is below 4.5:1."""
    texts = figure.locator(
        ".nv-title, .nv-facet-title, .nv-corner, .nv-collabel, .nv-rowlabel, .nv-legend-title, "
        ".nv-tick:not(.nv-tick-quiet), .nv-legend-text, .nv-detail-name, .nv-detail-metric, "
        ".nv-top li, button.nv-tool"
    )
    found = texts.evaluate_all(COLOURS)
    assert len(found) > 50
    return [
        f"{t['text']!r}: {contrast(t['fg'], t['bg']):.2f}"
        for t in found
        if contrast(t["fg"], t["bg"]) < 4.5
    ]


def test_trace_in_light_and_dark_jupyterlab(browser, artifacts, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)
    root = tmp_path / "lab"
    root.mkdir()
    notebook(root / "figure.ipynb")
    with jupyter_lab(root, log_path=artifacts / "jupyterlab_figure.log") as lab:
        ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT)
        errors, frames = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "websocket",
            lambda ws: (
                "/api/kernels/" in ws.url and ws.on("framereceived", lambda f: frames.append(f))
            ),
        )
        page.goto(f"{lab['base']}/lab/tree/figure.ipynb?token={lab['token']}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        for _ in range(TIMEOUT // 100):
            if any(
                b"kernel_info_reply" in (f if isinstance(f, bytes) else f.encode()) for f in frames
            ):
                break
            page.wait_for_timeout(100)
        else:
            pytest.fail("the kernel never connected")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        figure = page.locator(".jp-Notebook .jp-Cell").nth(1).get_by_test_id("heatmap")
        expect(figure.get_by_test_id("heatmap-cell")).to_have_count(
            3 * 2 * 11
        )  # panels × layers × tokens
        cells = figure.get_by_test_id("heatmap-cell")

        # a click answers from the kept top-k, without running the model (checked below, from
        # the kernel's count of forward passes); its time in the browser is recorded, not
        # asserted (the first click warms the widget's path)
        page.wait_for_timeout(500)
        times = [cells.nth(i).evaluate(CLICK) for i in (40, 41, 60)]
        expect(figure.get_by_test_id("detail-patched-token")).to_have_count(5)
        (artifacts / "figure_click_ms.json").write_text(json.dumps(times))
        # the keyboard in Lab's command mode: arrows move between cells, Enter asks
        figure.locator("[data-panel=block][data-layer='0'][data-pos='0']").focus()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowRight")
        active = page.evaluate("() => Object.assign({}, document.activeElement.dataset)")
        assert (active["panel"], active["pos"], active["layer"]) == ("block", "1", "1")
        page.keyboard.press("Enter")
        expect(figure.locator(".nv-detail-title")).to_have_text(
            'panel block · pos 1 " E" · layer 1'
        )
        expect(figure.get_by_test_id("detail-patched-token")).to_have_count(5)
        assert page.locator(".jp-Notebook.jp-mod-editMode").count() == 0  # Lab kept out of it
        # each facet's tooltip names its own component
        for panel, component in (("block", "block_output"), ("mlp", "mlp_output (window 2)")):
            figure.locator(f"[data-panel={panel}][data-layer='1'][data-pos='3']").hover()
            expect(figure.get_by_test_id("heatmap-tip-meaning")).to_have_text(
                f"p(' Paris') with {component} restored at this cell"
            )
        # a normalized grid's click panel: 1 and 0, the raw values beside
        normalized = page.locator(".jp-Notebook .jp-Cell").nth(2).get_by_test_id("heatmap")
        normalized.locator("[data-layer='1'][data-pos='4']").click()
        metric = "p(' Paris') normalized"
        expect(normalized.get_by_test_id("detail-clean-metric")).to_contain_text(
            f"{metric} = 1 (raw "
        )
        expect(normalized.get_by_test_id("detail-corrupted-metric")).to_contain_text(
            f"{metric} = 0 (raw "
        )
        # the colour bar of a live fill within the baselines: the same from the first batch
        # to the end
        last = page.locator(".jp-Notebook .jp-Cell").nth(3)
        last.locator(".jp-InputPrompt").click()
        page.keyboard.press("b")  # a new cell below, to run the fill in while we watch
        page.keyboard.press("Enter")
        page.keyboard.type('print("passes since the sweeps:", passes - seen); fill()')
        page.keyboard.press("Shift+Enter")
        filling = page.locator(".jp-Notebook .jp-Cell").nth(4)
        # every click above (mouse, keyboard, the normalized grid) ran no forward pass
        expect(filling.locator(".jp-OutputArea-output").first).to_contain_text(
            "passes since the sweeps: 0"
        )
        live = filling.get_by_test_id("heatmap")
        live_cells = live.get_by_test_id("heatmap-cell")
        expect(live_cells).to_have_count(2 * 11)
        grey = "rgb(189, 189, 189)"
        bars = []
        for _ in range(TIMEOUT // 20):
            filled = sum(c != grey for c in backgrounds(live_cells))
            if filled and (not bars or bars[-1][0] != filled):
                bars.append((filled, colour_bar(live)))
            if filled == 2 * 11:
                break
            page.wait_for_timeout(20)
        assert bars[0][0] == 2 and bars[-1][0] == 2 * 11, [b[0] for b in bars]  # first batch, end
        assert all(bar == bars[0][1] for _, bar in bars), bars
        assert len(bars[0][1]["ticks"]) >= 5 and bars[0][1]["title"] == "p(' Paris') normalized"
        figure.locator("[data-panel=mlp][data-layer='1'][data-pos='4']").hover()
        figure.screenshot(path=artifacts / "heatmap-light.png")
        assert readable(figure) == []

        # JupyterLab Dark, from the Settings menu
        page.get_by_role("menuitem", name="Settings", exact=True).click()
        page.locator(".lm-Menu-item", has_text="Theme").first.hover()
        page.get_by_role("menuitem", name="JupyterLab Dark", exact=True).click()
        page.wait_for_selector("body[data-jp-theme-light=false]", state="attached")
        page.wait_for_timeout(1500)  # the theme's CSS applied, the figure repainted
        figure.locator("[data-panel=mlp][data-layer='1'][data-pos='4']").hover()
        figure.screenshot(path=artifacts / "heatmap-dark.png")
        assert readable(figure) == []
        # the palette's centre is the dark one, not a glaring white, on the dark page
        ramp = figure.locator(".nv-ramp").evaluate("r => r.style.background")
        samples = [tuple(map(int, c.split(","))) for c in re.findall(r"rgb\(([\d, ]+)\)", ramp)]
        assert len(samples) == 21 and (247, 247, 247) not in samples
        assert min(map(luminance, samples)) < luminance((60, 60, 60))
        assert errors == []
        ctx.close()
