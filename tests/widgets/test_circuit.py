"""The circuit graph widget in a real JupyterLab, a real kernel and Debian's Chromium: a Circuit
made by hand renders as a graph, hover names an edge and its score, the slider redraws the
number of edges and reads faithfulness from the curve, a click or Enter on a component lists
its layer's node scores; then the notebook is saved, the kernel shut down and the page reopened
in JupyterLab Dark: the graph is back from the saved state (never "model not found"), still
answers the slider without a kernel, and every label has a contrast of at least 4.5:1 computed
from the rendered colours. Screenshots go to the artifacts folder."""

from __future__ import annotations

import json
import re
import urllib.request

import nbformat
import pytest

from tests.circuits.test_result import fake_circuit
from tests.outputs import static_svg
from tests.widgets.labserver import jupyter_lab

pytestmark = pytest.mark.lab
TIMEOUT = 90_000  # ms: a cold kernel and Lab on 2 busy CPUs, with room to spare
ROOT = __file__.rsplit("/tests/", 1)[0]
SETUP = f"""\
import sys
sys.path.insert(0, {ROOT!r})
from tests.circuits.test_result import fake_circuit
from tests.outputs import static_svg
circ = fake_circuit(3, 2, keep=10)"""

# The contrast of each text against what is drawn under it, from computed colours: SVG labels
# against their node box's fill, HTML text against its ancestors' backgrounds composited.
CONTRAST = """
(elements) => {
  const parse = (c) => {
    const m = c.match(/[\\d.]+/g).map(Number);
    return [m[0], m[1], m[2], m[3] ?? 1];
  };
  const over = (top, under) =>
    [0, 1, 2].map((k) => top[k] * top[3] + under[k] * (1 - top[3])).concat(1);
  const lum = (c) => {
    const v = c.slice(0, 3).map((x) => {
      x /= 255;
      return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  };
  const backdrop = (e) => {
    const chain = [];
    for (let a = e; a; a = a.parentElement) chain.unshift(a);
    const white = [255, 255, 255, 1];
    return chain.reduce((bg, a) => over(parse(getComputedStyle(a).backgroundColor), bg), white);
  };
  return elements.map((e) => {
    const svgText = e instanceof SVGElement;
    let under = backdrop(svgText ? e.closest("svg").parentElement : e);
    if (svgText) {
      const box = e.parentElement.querySelector("rect");
      under = over(parse(getComputedStyle(box).fill), under);
    }
    const ink = over(parse(getComputedStyle(e)[svgText ? "fill" : "color"]), under);
    const [a, b] = [lum(ink), lum(under)].sort((x, y) => y - x);
    return [e.textContent, (a + 0.05) / (b + 0.05)];
  });
}"""
# a point on an edge's stroke where the edge itself is the topmost element, in page pixels
POINT_ON = """
(p) => {
  const n = p.getTotalLength(), m = p.getScreenCTM();
  for (const f of [0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8]) {
    const q = p.getPointAtLength(n * f);
    const x = m.a * q.x + m.c * q.y + m.e, y = m.b * q.x + m.d * q.y + m.f;
    if (document.elementFromPoint(x, y) === p) return [x, y];
  }
  return null;
}"""


def put_setting(lab, plugin: str, value: dict) -> None:
    """Set a JupyterLab user setting through the server's settings API."""
    request = urllib.request.Request(
        f"{lab['base']}/lab/api/settings/{plugin}",
        data=json.dumps({"raw": json.dumps(value)}).encode(),
        method="PUT",
        headers={"Authorization": f"token {lab['token']}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 204


def shut_down_kernels(lab) -> None:
    url = f"{lab['base']}/api/sessions?token={lab['token']}"
    with urllib.request.urlopen(url, timeout=5) as r:
        sessions = json.load(r)
    for s in sessions:
        request = urllib.request.Request(
            f"{lab['base']}/api/sessions/{s['id']}?token={lab['token']}", method="DELETE"
        )
        urllib.request.urlopen(request, timeout=30).close()


def open_notebook(page, lab, name):
    """Open `name` and wait until its kernel has answered kernel_info (Idle shows before)."""
    frames = []
    page.on(
        "websocket",
        lambda ws: "/api/kernels/" in ws.url and ws.on("framereceived", lambda f: frames.append(f)),
    )
    page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    for _ in range(TIMEOUT // 100):
        if any(b"kernel_info_reply" in (f if isinstance(f, bytes) else f.encode()) for f in frames):
            return
        page.wait_for_timeout(100)
    pytest.fail("the kernel never connected")


def test_circuit_graph_in_jupyterlab(browser, artifacts, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)
    circ = fake_circuit(3, 2, keep=10)  # the kernel's circuit, made the same way
    scores = circ.scores.tolist()
    root = tmp_path / "lab"
    root.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in (SETUP, "circ")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nbformat.write(nb, root / "circuit.ipynb")
    with jupyter_lab(root, log_path=artifacts / "jupyterlab_circuit.log") as lab:
        # what a user who keeps widgets sets once (Settings → Save Widget State Automatically)
        put_setting(lab, "@jupyter-widgets/jupyterlab-manager:plugin", {"saveState": True})
        ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        open_notebook(page, lab, "circuit.ipynb")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        out = page.locator(".jp-Notebook .jp-Cell").nth(1)

        # 1. renders: every component, the kept edges, the circuit's faithfulness
        edges = out.get_by_test_id("circuit-edge")
        expect(edges).to_have_count(10)
        expect(out.get_by_test_id("circuit-node")).to_have_count(len(circ.nodes))
        status = out.get_by_test_id("circuit-status")
        expect(status).to_have_text("10 edges · faithfulness 0.91")
        expect(out.get_by_test_id("circuit-title")).to_contain_text("eap circuit · logit_diff(")
        out.screenshot(path=artifacts / "lab_circuit.png")

        # 2. hover on the strongest edge (drawn last, on top): its name and score
        strongest = edges.last
        i = int(strongest.get_attribute("data-edge"))
        assert i == circ.order()[0]
        x, y = strongest.evaluate(POINT_ON)
        page.mouse.move(x, y)
        tip = out.get_by_test_id("circuit-tip")
        expect(tip).to_be_visible()
        expect(tip).to_contain_text(circ.edges[i].name)
        shown = float(re.search(r"score ([+-][\d.e+-]+)", tip.inner_text()).group(1))
        assert shown == pytest.approx(scores[i], rel=1e-3)
        out.screenshot(path=artifacts / "lab_circuit_hover.png")
        page.mouse.move(5, 5)
        expect(tip).to_be_hidden()

        # 3. the slider, by keyboard: 10 → 5 → 10 → 20 edges, faithfulness from the curve
        slider = out.get_by_test_id("circuit-slider")
        slider.focus()
        page.keyboard.press("ArrowLeft")
        expect(edges).to_have_count(5)
        expect(status).to_have_text("5 edges · faithfulness 0.62")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        expect(edges).to_have_count(20)
        expect(status).to_have_text("20 edges · faithfulness 0.97")
        drawn = {int(e) for e in edges.evaluate_all("es => es.map(e => e.dataset.edge)")}
        assert drawn == set(circ.order()[:20])
        assert slider.get_attribute("aria-label") == "number of edges kept"

        # 4. a click on a head, then Enter on an MLP: the node scores of the layer's components
        out.locator('[data-testid=circuit-node][data-node="a1.h0"]').click()
        rows = out.get_by_test_id("circuit-detail-row")
        expect(rows).to_have_count(3)  # a1.h0, a1.h1, m1
        nodes = {n.name: v for n, v in circ.nodes.items()}
        for row in rows.all():
            name, value = row.inner_text().split()
            assert float(value) == pytest.approx(nodes[name], rel=2e-3)
        mlp = out.locator('[data-testid=circuit-node][data-node="m2"]')
        assert mlp.get_attribute("tabindex") == "0"
        assert mlp.get_attribute("aria-label").startswith("m2: node score ")
        mlp.focus()
        page.keyboard.press("Enter")
        expect(out.get_by_test_id("circuit-detail")).to_contain_text("m2 · node scores in layer 2")
        out.screenshot(path=artifacts / "lab_circuit_detail.png")

        # 5. save, shut the kernel down, reopen in JupyterLab Dark
        page.get_by_role("menuitem", name="File", exact=True).click()
        page.locator('.lm-Menu-item[data-command="docmanager:save"]').click()
        for _ in range(TIMEOUT // 100):
            saved = nbformat.read(root / "circuit.ipynb", as_version=4)
            if saved["cells"][1]["outputs"]:
                break
            page.wait_for_timeout(100)
        data = saved["cells"][1]["outputs"][0]["data"]
        assert static_svg(data).lstrip().startswith("<svg")  # viewers without widgets
        assert data["text/plain"].startswith("Circuit by eap")
        model_id = data["application/vnd.jupyter.widget-view+json"]["model_id"]
        state = saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
        assert "nbvene-circuit" in state["state"][model_id]["state"]["_esm"]
        shut_down_kernels(lab)
        put_setting(lab, "@jupyterlab/apputils-extension:themes", {"theme": "JupyterLab Dark"})
        page.reload()
        page.wait_for_selector("body[data-jp-theme-light='false']", state="attached")
        out = page.locator(".jp-Notebook .jp-Cell").nth(1)
        edges = out.get_by_test_id("circuit-edge")
        expect(edges).to_have_count(20)  # the size the slider was left at
        expect(out).not_to_contain_text("model not found")
        slider = out.get_by_test_id("circuit-slider")
        slider.focus()
        page.keyboard.press("ArrowLeft")
        expect(out.get_by_test_id("circuit-status")).to_have_text("10 edges · faithfulness 0.91")
        out.locator('[data-testid=circuit-node][data-node="a0.h1"]').click()
        expect(out.get_by_test_id("circuit-detail-row")).to_have_count(3)

        # 6. dark theme: every label readable
        texts = out.locator(
            ".nv-node-label, .nv-circuit-title, .nv-circuit-status, .nv-circuit-caption, "
            ".nv-circuit-ticks span, .nv-detail-title, .nv-detail-name, .nv-detail-value"
        )
        contrast = texts.evaluate_all(CONTRAST)
        assert len(contrast) >= len(circ.nodes) + 8
        low = [(t, round(c, 2)) for t, c in contrast if c < 4.5]
        assert not low, low
        out.screenshot(path=artifacts / "lab_circuit_dark.png")
        ctx.close()
    assert errors == []
