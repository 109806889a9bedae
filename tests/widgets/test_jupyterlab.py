"""End to end in a real JupyterLab, a real kernel and Debian's Chromium, driven through the UI:
a sweep on a tiny model fills its heatmap live, a click shows top-k predictions computed in the
kernel, the steering panel's slider moves by mouse and keyboard and the kernel sees the values,
and Stop ends a long sweep. Screenshots go to the artifacts folder."""

from __future__ import annotations

import json
import re
import subprocess
import time

import nbformat
import pytest

from tests.widgets.labserver import children, jupyter_lab

pytestmark = pytest.mark.lab
TIMEOUT = 90_000  # ms: a cold kernel and Lab on 2 busy CPUs, with room to spare

SETUP = """\
import json, time
import nbvene as nv
from nbvene.widgets import SteeringPanel
model, tok = nv.models.tiny("gpt2")
slow = [0.0]  # seconds added to each pass (its LM head), so a sweep lasts long enough to watch
model.lm_head.register_forward_pre_hook(lambda *a: time.sleep(slow[0]))
%load_ext nbvene
%nbvene use model tok"""
SWEEP = """\
%%intervene -o res --max-batch 2
base:   "The Eiffel Tower is in Paris"
source: "The Colosseum is in Rome now"
patch:  block_output layer=* pos=*
metric: logit_diff(" Paris", " Rome")"""
PANEL = """\
slow[0] = 0.0
panel = SteeringPanel(
    [{"label": "kind−cruel · block_output L1", "min": -4, "max": 4, "step": 0.5, "value": 1}],
    callback=lambda v: {"columns": [{"title": f"steered ×{v[0]:g}",
                                     "tokens": [{"text": " kind", "mark": v[0] > 2}]}],
                        "note": f"kernel saw {v}"},
    title="I think that you are")
panel"""
LONG = """\
slow[0] = 0.5
try:
    nv.run(res.spec.text, model=model, tokenizer=tok, max_batch=1, live=True)
    print("FINISHED")
except nv.SweepInterrupted as stop:
    print("STOPPED", int(stop.result.values.isfinite().sum()), "of", stop.result.values.numel())"""
STATE = 'print("STATE=" + json.dumps({"values": panel.values, "answer": panel.answer.get("id")}))'


def notebook(path):
    # cells: 0 setup, 1 slow-down (a cell magic must start its cell), 2 sweep, 3 panel,
    # 4 long sweep, 5 state
    cells = [SETUP, "slow[0] = 0.3", SWEEP, PANEL, LONG, STATE]
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in cells],
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        },
    )
    nbformat.write(nb, path)


def backgrounds(locator) -> list[str]:
    return locator.evaluate_all("es => es.map(e => getComputedStyle(e).backgroundColor)")


def test_jupyterlab_end_to_end(browser, artifacts, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)  # page.set_default_timeout() does not cover expect()
    t0 = time.perf_counter()
    marks = {}

    def mark(name):
        marks[name] = round(time.perf_counter() - t0, 2)

    root = tmp_path / "lab"
    root.mkdir()
    notebook(root / "widgets.ipynb")
    with jupyter_lab(root, log_path=artifacts / "jupyterlab.log") as lab:
        mark("server_up")
        ctx = browser.new_context(viewport={"width": 1300, "height": 1100})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT)
        errors, frames = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # "Idle" shows before a kernel exists, and Run All then does nothing: ready means the
        # kernel's websocket has answered kernel_info
        page.on(
            "websocket",
            lambda ws: (
                "/api/kernels/" in ws.url and ws.on("framereceived", lambda f: frames.append(f))
            ),
        )
        page.goto(f"{lab['base']}/lab/tree/widgets.ipynb?token={lab['token']}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        for _ in range(TIMEOUT // 100):
            if any(
                b"kernel_info_reply" in (f if isinstance(f, bytes) else f.encode()) for f in frames
            ):
                break
            page.wait_for_timeout(100)
        else:
            pytest.fail("the kernel never connected")
        mark("kernel_connected")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        cells = page.locator(".jp-Notebook .jp-Cell")

        # 1. the sweep's heatmap is shown before it ends and fills in
        sweep = cells.nth(2)
        heat = sweep.get_by_test_id("heatmap-cell")
        expect(sweep.get_by_test_id("heatmap-progress-text")).to_contain_text(" of ")
        expect(heat.first).to_be_visible()
        mark("heatmap_shown")
        grey = "rgb(189, 189, 189)"
        seen_partial = False
        while True:
            colours = backgrounds(heat)
            filled = sum(c != grey for c in colours)
            if 0 < filled < len(colours) and not seen_partial:
                seen_partial = True
                sweep.screenshot(path=artifacts / "lab_heatmap_filling.png")
            if filled == len(colours):
                break
            page.wait_for_timeout(50)
        assert seen_partial, "the heatmap was never seen part-filled"
        mark("heatmap_filled")

        # 2. Stop ends the long sweep (cell 4), keeping what it measured
        long = cells.nth(4)
        stop = long.get_by_test_id("heatmap-stop")
        expect(long.get_by_test_id("heatmap-progress-text")).to_contain_text(
            re.compile(r"^[3-9]\d* of")
        )
        stop.click()
        printed = long.locator("[data-mime-type='application/vnd.jupyter.stdout']")
        expect(printed).to_contain_text("STOPPED")
        text = printed.inner_text()
        done, total = map(int, re.search(r"STOPPED (\d+) of (\d+)", text).groups())
        assert 3 <= done < total == heat.count(), text  # the same grid as the first sweep
        expect(long.get_by_test_id("heatmap-progress-text")).to_contain_text("stopped at")
        long.screenshot(path=artifacts / "lab_stopped.png")
        mark("stopped")

        # 3. a click asks the kernel for that cell's top predictions
        target = sweep.locator('[data-testid=heatmap-cell][data-layer="1"][data-pos="5"]')
        target.click()
        detail = sweep.get_by_test_id("heatmap-detail")
        expect(detail.get_by_test_id("detail-patched-token")).to_have_count(5)
        expect(detail).to_contain_text("clean run")
        expect(detail).to_contain_text("corrupted run")
        sweep.screenshot(path=artifacts / "lab_heatmap_click.png")
        mark("click_through")

        # 4. the panel's slider: keyboard, then mouse; the kernel's callback answers each
        panel = cells.nth(3)
        slider = panel.get_by_test_id("panel-slider-0")
        slider.focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        expect(panel.get_by_test_id("panel-note")).to_have_text("kernel saw [2.0]")
        box = slider.bounding_box()
        page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
        expect(panel.get_by_test_id("panel-note")).to_have_text("kernel saw [4.0]")
        expect(panel.locator(".nv-mark")).to_have_count(1)
        panel.screenshot(path=artifacts / "lab_panel.png")
        mark("panel")

        # 5. the kernel's own state, printed by re-running the last cell
        cells.last.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        expect(cells.last.locator(".jp-OutputArea-output")).to_contain_text('"values": [4.0]')
        page.screenshot(path=artifacts / "lab_notebook.png", full_page=True)
        ctx.close()
        kernels = children(lab["pid"])
    mark("server_stopped")
    alive = [
        k
        for k in kernels
        if subprocess.run(["kill", "-0", str(k)], capture_output=True).returncode == 0
    ]
    assert alive == []
    assert errors == []
    (artifacts / "lab_timings.json").write_text(json.dumps(marks, indent=1))
    print("timings", marks)
