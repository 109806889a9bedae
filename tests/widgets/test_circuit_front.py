"""The circuit graph's front end in Chromium with a fake anywidget model (no Jupyter): edge
colours and widths equal the static SVG's, the slider's stops and its text when a size was not
measured, the size and the clicked node sent back to the model, text set as text."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
import torch

from nbvene.circuits import Circuit
from nbvene.circuits.widget import HERE, CircuitGraph, _esm
from tests.circuits.test_result import fake_circuit
from tests.widgets.conftest import HERE as TESTS
from tests.widgets.conftest import js_state

SVG = "{http://www.w3.org/2000/svg}"


def _serve(route):
    """http://widgets.test/test/harness.html, and the graph's ESM and CSS as anywidget loads
    them."""
    name = route.request.url.rsplit("/", 1)[1]
    files = {
        "harness.html": (lambda: (TESTS / "harness.html").read_text(), "text/html"),
        "graph.js": (_esm, "text/javascript"),
        "graph.css": (lambda: (HERE / "graph.css").read_text(), "text/css"),
    }
    if name in files:
        body, kind = files[name]
        route.fulfill(body=body(), headers={"content-type": kind})
    else:
        route.fulfill(status=404, body="not found")


@pytest.fixture
def show(page):
    """show(circuit) mounts its CircuitGraph in the harness page and returns the page."""
    page.route("http://widgets.test/**", _serve)
    page.goto("http://widgets.test/test/harness.html")
    page.wait_for_function("window.harnessReady === true")

    def _show(circuit):
        page.evaluate(
            "([e, c, s]) => mount(e, c, s)",
            [
                "http://widgets.test/pkg/graph.js",
                "http://widgets.test/pkg/graph.css",
                js_state(CircuitGraph(circuit)),
            ],
        )
        return page

    return _show


def test_edges_are_drawn_as_in_the_static_svg(show):
    circ = fake_circuit(4, 3, keep=25)
    page = show(circ)
    edges = page.get_by_test_id("circuit-edge")
    assert edges.count() == 25
    drawn = edges.evaluate_all(
        "es => es.map(e => [e.dataset.edge, e.getAttribute('stroke'),"
        " e.getAttribute('stroke-width')])"
    )
    static = {
        p.get("data-edge"): (p.get("stroke"), float(p.get("stroke-width")))
        for p in ET.fromstring(circ.to_svg()).iter(f"{SVG}path")
        if p.get("data-edge")
    }
    assert {i for i, _, _ in drawn} == set(static)
    for i, stroke, width in drawn:
        assert stroke == static[i][0]
        assert float(width) == pytest.approx(static[i][1], abs=0.01)
    order = [int(i) for i, _, _ in drawn]
    assert order[-1] == circ.order()[0]  # the strongest on top
    labels = page.locator(".nv-node-label").evaluate_all("es => es.map(e => e.textContent)")
    assert sorted(labels) == sorted(n.name for n in circ.nodes)
    assert page.evaluate("window.__errors") == []


def test_slider_sends_the_size_and_says_when_faithfulness_is_unmeasured(show):
    circ = fake_circuit(3, 2, keep=10).top(7)
    circ.metric = "<img src=x onerror=window.pwned=1>"
    page = show(circ)
    status = page.get_by_test_id("circuit-status")
    assert status.inner_text() == "7 edges · faithfulness not measured at this size"
    slider = page.get_by_test_id("circuit-slider")
    assert slider.get_attribute("aria-valuetext").startswith("7 edges, faithfulness not measured")
    slider.focus()
    page.keyboard.press("ArrowRight")  # 7 → 10, a measured size
    assert status.inner_text() == "10 edges · faithfulness 0.91"
    assert page.get_by_test_id("circuit-edge").count() == 10
    saved = page.evaluate("window.__w.rec.saved")
    assert saved[-1]["size"] == 10
    page.locator('[data-testid=circuit-node][data-node="a0.h1"]').click()
    assert page.evaluate("window.__w.rec.saved")[-1]["selected"] == list(circ.nodes).index(
        next(n for n in circ.nodes if n.name == "a0.h1")
    )
    faded = page.locator(".nv-edge.nv-faded").evaluate_all("es => es.map(e => e.dataset.edge)")
    touching = {i for i, e in enumerate(circ.edges) if "a0.h1" in (e.sender.name, e.receiver.name)}
    shown = set(circ.order()[:10])
    assert {int(i) for i in faded} == shown - touching
    assert "<img" in page.get_by_test_id("circuit-title").inner_text()
    assert page.evaluate("window.pwned") is None


def test_without_a_curve_the_slider_covers_every_size(show):
    circ = fake_circuit(2, 1, keep=4)
    circ.curve = []
    page = show(circ)
    slider = page.get_by_test_id("circuit-slider")
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("1", str(len(circ.edges)))
    slider.fill("9")
    assert page.get_by_test_id("circuit-edge").count() == 9
    assert "not measured" in page.get_by_test_id("circuit-status").inner_text()


def test_an_empty_circuit_draws_nothing_and_fails_nothing(show):
    page = show(Circuit([], torch.zeros(0), [], math.nan))
    assert page.get_by_test_id("circuit-edge").count() == 0
    assert page.get_by_test_id("circuit-status").inner_text().startswith("0 edges")
    assert page.evaluate("window.__errors") == []
