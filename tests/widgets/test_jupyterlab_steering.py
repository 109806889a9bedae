"""The steering knob end to end in a real JupyterLab: a `%%intervene` cell with a
`slider(...)` strength shows the steering panel; moving the slider with the keyboard makes the
kernel regenerate, and the steered text changes while the baseline stays."""

from __future__ import annotations

import nbformat
import pytest

from tests.widgets.labserver import jupyter_lab

pytestmark = pytest.mark.lab
TIMEOUT = 90_000  # ms: a cold kernel and Lab on 2 busy CPUs

SETUP = """\
import torch
import nbvene as nv
model, tok = nv.models.tiny("llama", layers=3)
# the tiny random model's activations are small: a small vector, felt only at high strength
v = 0.003 * torch.randn(64, generator=torch.Generator().manual_seed(0))
%load_ext nbvene
%nbvene use model tok"""
STEER = """\
%%intervene
steer:    block_output layer=1 by {v} * slider(-8, 8, 0)
generate: "The Eiffel Tower is located in" max_new_tokens=6"""


def steered_text(cell) -> str:
    column = cell.get_by_test_id("panel-column").nth(1)
    return "".join(column.get_by_test_id("panel-token").all_inner_texts())


def test_moving_the_slider_changes_the_generated_text(browser, artifacts, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in (SETUP, STEER)],
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        },
    )
    nbformat.write(nb, root / "steer.ipynb")
    with jupyter_lab(root, log_path=artifacts / "jupyterlab_steering.log") as lab:
        ctx = browser.new_context(viewport={"width": 1300, "height": 900})
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
        page.goto(f"{lab['base']}/lab/tree/steer.ipynb?token={lab['token']}")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        # ready when the kernel's websocket has answered kernel_info (see test_jupyterlab.py)
        for _ in range(TIMEOUT // 100):
            if any(
                b"kernel_info_reply" in (f if isinstance(f, bytes) else f.encode()) for f in frames
            ):
                break
            page.wait_for_timeout(100)
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        cell = page.locator(".jp-Notebook .jp-Cell").nth(1)
        slider = cell.get_by_test_id("panel-slider-0")
        expect(slider).to_be_visible()
        slider.focus()
        page.keyboard.press("ArrowRight")  # 0 → 1: too weak to change the text here
        expect(cell.get_by_test_id("panel-column")).to_have_count(2)
        expect(cell.get_by_test_id("panel-column").nth(1).locator("h5")).to_have_text("steered ×1")
        baseline = "".join(
            cell.get_by_test_id("panel-column")
            .nth(0)
            .get_by_test_id("panel-token")
            .all_inner_texts()
        )
        weak = steered_text(cell)
        assert weak == baseline
        for _ in range(6):
            page.keyboard.press("ArrowRight")  # → 7
        expect(cell.get_by_test_id("panel-column").nth(1).locator("h5")).to_have_text("steered ×7")
        strong = steered_text(cell)
        assert strong != weak
        assert cell.get_by_test_id("panel-column").nth(1).locator(".nv-mark").count() > 0
        cell.screenshot(path=artifacts / "lab_steering_panel.png")
        ctx.close()
    assert errors == []
