"""Every Result survives JupyterLab after its kernel is gone, in a real Lab driven in Chromium:

* run → save → close → reopen without running (a new server, a new kernel): a sweep, a causal
  trace and a steering panel show their figures (the live widgets, restored from the widget
  state Lab saves with nbvene's settings override), never "model not found"; saved again
  without running (Lab then saves no widget state) and reopened once more, they show their
  static forms (nbvene_jupyter's pre-save hook dropped the dead widget views);
* each stored tutorial, copied as a clone would be (written to disk, never trusted): its
  figures show as images of real size, and no tooltip text spills outside them."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from tests.widgets.labserver import jupyter_lab

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "notebooks"))
import execute  # noqa: E402  (notebooks/execute.py: the tutorials, in order)

pytestmark = pytest.mark.lab
TIMEOUT = 120_000  # ms: a cold kernel and Lab on 2 busy CPUs, with room to spare
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# every cell rendered, however far down: Lab's windowing would leave far outputs out of the page
ALL_CELLS = {"notebook-extension/tracker": {"windowingMode": "none"}}

SETUP = """\
import torch
import nbvene as nv
model, tok = nv.models.tiny("gpt2")
llama, llama_tok = nv.models.tiny("llama", layers=3)
v = 0.003 * torch.randn(64, generator=torch.Generator().manual_seed(0))
%load_ext nbvene
%nbvene use llama llama_tok"""
SWEEP = """\
nv.run('base: "The Eiffel Tower is in Paris"\\nsource: "The Colosseum is in Rome now"\\n'
       'patch: block_output layer=* pos=*\\nmetric: logit_diff(" Paris", " Rome")',
       model=model, tokenizer=tok)"""
TRACE = """\
nv.causal_trace("The Eiffel Tower is in", subject="The Eiffel Tower", target=" Paris",
                model=model, tokenizer=tok, samples=2, window=2)"""
PANEL = """\
%%intervene
steer:    block_output layer=1 by {v} * slider(-8, 8, 1)
generate: "The Eiffel Tower is located in" max_new_tokens=4"""


def as_installed(tmp_path: Path) -> tuple[list[str], dict]:
    """`jupyter lab`'s options and environment that read the wheel's Jupyter files as if
    installed: the settings override (jupyter-config/overrides.json) as
    {app_settings_dir}/overrides.d/nbvene.json, and the server config that enables
    nbvene_jupyter (jupyter-config/server.json) in a Jupyter config folder."""
    settings = tmp_path / "app-settings" / "overrides.d"
    config = tmp_path / "etc-jupyter" / "jupyter_server_config.d"
    for folder in (settings, config):
        folder.mkdir(parents=True)
    shutil.copy(ROOT / "jupyter-config" / "overrides.json", settings / "nbvene.json")
    shutil.copy(ROOT / "jupyter-config" / "server.json", config / "nbvene.json")
    return [f"--LabApp.app_settings_dir={settings.parent}"], {
        "JUPYTER_CONFIG_PATH": str(config.parent)
    }


def open_notebook(browser, lab, path: str):
    """A page showing notebook `path` whose kernel has answered (Lab shows "Idle" before a
    kernel exists: ready means kernel_info_reply came over the kernel's websocket)."""
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT)
    page.errors, frames = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on(
        "websocket",
        lambda ws: "/api/kernels/" in ws.url and ws.on("framereceived", lambda f: frames.append(f)),
    )
    # reset: the workspace forgets notebooks opened before, so this page shows this one only
    page.goto(f"{lab['base']}/lab/tree/{path}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    for _ in range(TIMEOUT // 100):
        if any(b"kernel_info_reply" in (f if isinstance(f, bytes) else f.encode()) for f in frames):
            return ctx, page
        page.wait_for_timeout(100)
    pytest.fail(f"the kernel of {path} never connected")


def api(lab, path: str, method: str = "GET"):
    url = f"{lab['base']}/api/{path}?token={lab['token']}"
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
        return json.loads(r.read() or b"null")


def close_all(lab) -> None:
    """Shut down every session's kernel, as closing the notebooks with their kernels does."""
    for session in api(lab, "sessions"):
        api(lab, f"sessions/{session['id']}", "DELETE")


def test_reopened_after_save_every_figure_shows(browser, artifacts, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)
    root = tmp_path / "lab"
    root.mkdir()
    cells = [SETUP, SWEEP, TRACE, PANEL]
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in cells], metadata={"kernelspec": KERNELSPEC}
    )
    nbformat.write(nb, root / "saved.ipynb")
    args, env = as_installed(tmp_path)
    # one user's Lab, thrice: the same data folder holds the notary that trusts what Lab saved
    same_user = {"JUPYTER_DATA_DIR": str(tmp_path / "data"), **env}

    log = artifacts / "jupyterlab_saved.log"
    with jupyter_lab(root, log_path=log, args=args, extra_env=same_user) as lab:
        ctx, page = open_notebook(browser, lab, "saved.ipynb")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        shown = page.locator(".jp-Notebook .jp-Cell")
        expect(shown.nth(1).get_by_test_id("heatmap-cell").first).to_be_visible()
        expect(shown.nth(2).get_by_test_id("heatmap-cell").first).to_be_visible()
        expect(shown.nth(3).get_by_test_id("panel-token").first).to_be_visible()
        expect(shown.nth(3).locator(".jp-InputPrompt")).to_contain_text("[4]")
        cells_then = shown.nth(1).get_by_test_id("heatmap-cell").count()
        shown.nth(0).locator(".jp-InputPrompt").click()  # the notebook has the keyboard
        page.keyboard.press("Control+s")
        for _ in range(TIMEOUT // 200):  # saved, with the widget state
            saved = nbformat.read(root / "saved.ipynb", as_version=4)
            if saved.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state"):
                break
            page.wait_for_timeout(200)
        else:
            pytest.fail("Lab saved no widget state: is the settings override read?")
        ctx.close()
        close_all(lab)

    views = [
        o.data["application/vnd.jupyter.widget-view+json"]["model_id"]
        for c in saved.cells[1:]
        for o in c.outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(views) == 3
    assert set(views) <= set(saved.metadata["widgets"][WIDGET_STATE]["state"])

    # reopened by a new server, its kernel new and idle: nothing is run
    log = artifacts / "jupyterlab_reopened.log"
    with jupyter_lab(root, log_path=log, args=args, extra_env=same_user) as lab:
        ctx, page = open_notebook(browser, lab, "saved.ipynb")
        shown = page.locator(".jp-Notebook .jp-Cell")
        expect(shown.nth(1).get_by_test_id("heatmap-cell")).to_have_count(cells_then)
        expect(shown.nth(2).get_by_test_id("heatmap-cell").first).to_be_visible()
        expect(shown.nth(3).get_by_test_id("panel-token").first).to_be_visible()
        page.wait_for_timeout(2000)  # the new kernel has connected: nothing may go away
        notebook = page.locator(".jp-Notebook")
        assert "model not found" not in notebook.inner_text()
        assert shown.nth(1).get_by_test_id("heatmap-cell").count() == cells_then
        assert shown.nth(3).get_by_test_id("panel-token").count() > 0
        page.screenshot(path=artifacts / "lab_reopened.png", full_page=True)
        assert page.errors == []
        # saved again without running: Lab saves no state for widgets its kernel does not hold
        before = (root / "saved.ipynb").stat().st_mtime_ns
        shown.nth(0).locator(".jp-InputPrompt").click()
        page.keyboard.press("Control+s")
        for _ in range(TIMEOUT // 200):
            if (root / "saved.ipynb").stat().st_mtime_ns != before:
                break
            page.wait_for_timeout(200)
        page.wait_for_timeout(1000)  # written whole
        ctx.close()
        close_all(lab)

    resaved = nbformat.read(root / "saved.ipynb", as_version=4)
    assert not resaved.metadata["widgets"][WIDGET_STATE]["state"]
    outputs = [o for c in resaved.cells for o in c.get("outputs", [])]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)

    # reopened once more: the static forms, still never "model not found"
    log = artifacts / "jupyterlab_resaved.log"
    with jupyter_lab(root, log_path=log, args=args, extra_env=same_user) as lab:
        ctx, page = open_notebook(browser, lab, "saved.ipynb")
        shown = page.locator(".jp-Notebook .jp-Cell")
        expect(shown.nth(1).locator("img.nbvene-figure")).to_have_count(1)
        expect(shown.nth(2).locator("img.nbvene-figure")).to_have_count(1)
        expect(shown.nth(3).locator(".nbvene-panel-static")).to_contain_text("steered ×1")
        assert "model not found" not in page.locator(".jp-Notebook").inner_text()
        page.screenshot(path=artifacts / "lab_resaved.png", full_page=True)
        assert page.errors == []
        ctx.close()


def figures_stored(nb) -> int:
    """How many figures a stored notebook shows: one per `<img class="nbvene-figure">`."""
    return sum(
        o.get("data", {}).get("text/html", "").count('class="nbvene-figure"')
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )


def test_untrusted_tutorials_show_their_figures_and_no_tooltip_text(browser, artifacts, tmp_path):
    root = tmp_path / "clone"
    root.mkdir()
    paths = execute.tutorials()
    for path in paths:
        shutil.copy(path, root / path.name)  # a clone: files on disk, never trusted here
    with jupyter_lab(
        root, log_path=artifacts / "jupyterlab_untrusted.log", settings=ALL_CELLS
    ) as lab:
        for path in paths:
            stored = nbformat.read(path, as_version=4)
            model = api(lab, f"contents/{path.name}")
            code = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
            assert not any(c["metadata"].get("trusted") for c in code), path.name
            want = figures_stored(stored)
            ctx, page = open_notebook(browser, lab, path.name)
            outputs = page.locator(".jp-Notebook .jp-OutputArea")
            images = page.locator(".jp-Notebook img.nbvene-figure")
            deadline = time.monotonic() + TIMEOUT / 1000
            while images.count() < want and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            assert images.count() == want, path.name
            sizes = images.evaluate_all(
                "es => Promise.all(es.map(e => e.decode().then(() =>"
                " [e.naturalWidth, e.getBoundingClientRect().height])))"
            )
            assert all(w > 100 and h > 40 for w, h in sizes), (path.name, sizes)
            text = "\n".join(outputs.all_inner_texts())
            assert "· layer" not in text, path.name  # no tooltip text outside the figures
            assert "model not found" not in text and "object at 0x" not in text, path.name
            if path.name.startswith("04_"):
                page.screenshot(path=artifacts / "lab_untrusted_04.png", full_page=True)
            ctx.close()
            close_all(lab)
