"""What a notebook stores for every viewer, without a browser: a Result's display holds its
figure once (an `<img>` of the SVG, no inline SVG, no `image/svg+xml` copy), a 32 layers × 200
tokens result stores at most 400 KB with its saved widget state (values as one binary buffer),
and the steering panel answers its first values and brings a readable static form."""

from __future__ import annotations

import base64
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

import nbvene as nv
from nbvene.figures.page import INERT
from nbvene.results import Axis, Result
from nbvene.widgets import SteeringPanel
from nbvene.widgets.panel import static_form
from tests.outputs import static_svg, static_svgs

ROOT = Path(__file__).resolve().parents[2]
VIEW = "application/vnd.jupyter.widget-view+json"
LIMIT = 400_000  # bytes a 32 × 200 result may store (issue 16)
SLIDER = {"label": "kind−cruel · block_output L1", "min": -4, "max": 4, "step": 0.5, "value": 1}


@pytest.fixture
def in_a_kernel(monkeypatch):
    """Displays as in a Jupyter kernel: the widget's view joins the static figure."""
    from nbvene import widgets

    monkeypatch.setattr(sys.modules[widgets.mimebundle.__module__], "can_display", lambda: True)


def large() -> Result:
    """A 32 layers × 200 tokens restore sweep, built by hand."""
    layers, tokens = 32, 200
    values = torch.linspace(-9.0, 4.8, layers * tokens).reshape(layers, tokens)
    words = [f" word{i}" for i in range(tokens)]
    axes = (Axis("layer", range(layers)), Axis("pos", words, range(tokens)))
    spec = nv.parse(
        'base: "a b c"\nsource: "a b d"\npatch: block_output layer=* pos=*\n'
        'metric: logit_diff(" c", " d")'
    )
    clean, corrupted = torch.tensor([4.8]), torch.tensor([-9.0])
    return Result(values, axes, spec, 'logit_diff(" c", " d")', clean, corrupted)


def saved_state(widget) -> dict:
    """The widget's entry in the notebook's widget state, as nbclient stores it: the synced
    traits as JSON, each binary buffer base64 encoded beside them."""
    from ipywidgets.widgets.widget import _remove_buffers

    state, paths, buffers = _remove_buffers(widget.get_state())
    return {
        "model_name": state["_model_name"],
        "model_module": state["_model_module"],
        "model_module_version": state["_model_module_version"],
        "state": state,
        "buffers": [
            {"data": base64.b64encode(bytes(b)).decode(), "encoding": "base64", "path": p}
            for p, b in zip(paths, buffers, strict=True)
        ],
    }


def test_the_figure_is_stored_once_in_a_form_every_viewer_keeps(in_a_kernel):
    res = large()
    data = res._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    assert set(data) == {"text/plain", "text/html", VIEW}  # no image/svg+xml copy
    assert len(static_svgs(data["text/html"])) == 1
    assert "<svg" not in data["text/html"]  # nothing inline for a sanitiser to strip
    figure = static_svg(data)
    ET.fromstring(figure)  # a well-formed SVG document: the Result's figure, less what
    assert figure == INERT.sub("", res.to_svg())  # an image cannot use (tooltips, data-*)
    assert "<title>" not in figure and " data-" not in figure


def test_a_32_by_200_result_stores_at_most_400_kb(in_a_kernel):
    res = large()
    data = res._repr_mimebundle_()
    data = data[0] if isinstance(data, tuple) else data
    state = saved_state(nv.widgets.view(res))
    [values] = [b for b in state["buffers"] if b["path"] == ["values", "data"]]
    got = np.frombuffer(base64.b64decode(values["data"]), dtype="<f4")
    assert got.size == 32 * 200  # the values as one float32 buffer, not JSON lists
    assert np.allclose(np.sort(got), np.sort(res.values.reshape(-1).numpy()))
    output = {"output_type": "execute_result", "data": data, "metadata": {}}
    stored = len(json.dumps(output)) + len(json.dumps(state))
    assert stored <= LIMIT, f"{stored / 1000:.0f} KB stored"


def columns(values):
    return {
        "columns": [
            {"title": "baseline", "tokens": [{"text": "I think", "mark": False}]},
            {
                "title": f"steered ×{values[0]:g}",
                "tokens": [
                    {"text": " you are", "mark": False},
                    {"text": "  ", "mark": False},
                    {"text": " <cruel>", "mark": True},
                ],
            },
        ],
        "note": f"strength {values[0]:g}",
    }


def test_a_displayed_panel_answers_its_first_values_and_has_a_static_form():
    seen = []
    panel = SteeringPanel(
        [SLIDER], callback=lambda v: seen.append(v) or columns(v), title="I think that you are"
    )
    assert seen == []  # nothing is generated until the panel is shown
    found = panel._repr_mimebundle_()
    data = found[0] if isinstance(found, tuple) else found
    assert seen == [[1.0]]
    assert panel.answer["id"] == 0 and panel.answer["note"] == "strength 1"
    assert VIEW in data
    plain, html = data["text/plain"], data["text/html"]
    assert "object at 0x" not in plain
    assert plain.splitlines() == [
        "I think that you are",
        "kind−cruel · block_output L1 = 1",
        "baseline: I think",
        "steered ×1:  you are␣␣ <cruel>",
        "strength 1",
    ]
    # prose keeps its spaces; a token of nothing but whitespace shows its signs; text escaped
    assert " you are␣␣<mark> &lt;cruel&gt;</mark>" in html
    assert "<cruel>" not in html and "␣you" not in html
    panel._repr_mimebundle_()
    assert seen == [[1.0]]  # shown again: the same answer


def test_a_failing_first_answer_shows_in_the_static_form():
    panel = SteeringPanel([SLIDER], callback=lambda v: 1 / 0)
    found = panel._repr_mimebundle_()
    data = found[0] if isinstance(found, tuple) else found
    assert panel.answer == {"id": 0, "error": "ZeroDivisionError: division by zero"}
    assert "ZeroDivisionError: division by zero" in data["text/plain"]
    assert "ZeroDivisionError: division by zero" in data["text/html"]


def test_on_save_a_widget_view_the_saved_state_lacks_is_dropped_from_nbvene_outputs():
    import nbvene_jupyter

    def output(model_id: str, html: str) -> dict:
        view = {"model_id": model_id, "version_major": 2, "version_minor": 1}
        data = {"text/plain": "x", "text/html": html, VIEW: view}
        return {"output_type": "display_data", "data": data, "metadata": {}}

    # the static forms as nbvene makes them: a Result's figure, the steering panel's texts
    figure = large().slice(0)._repr_html_()
    panel = static_form("t", [SLIDER], {"id": 0, "values": [1.0], **columns([1.0])})["text/html"]
    cells = [
        output("kept", figure),  # its widget is in the saved state: it reopens live
        output("dead", figure),  # not: it would reopen as "model not found"
        output("dead", panel),
        output("dead", "<b>another library's widget</b>"),  # left as it is
    ]
    state = {nbvene_jupyter.WIDGET_STATE: {"state": {"kept": {}}}}
    nb = {
        "cells": [{"cell_type": "code", "outputs": cells, "source": ""}],
        "metadata": {"widgets": state},
    }
    nbvene_jupyter.pre_save(model={"type": "notebook", "content": nb}, path="a.ipynb")
    assert [VIEW in o["data"] for o in cells] == [True, False, False, True]
    assert all("text/html" in o["data"] for o in cells)  # the static forms stay
    nbvene_jupyter.pre_save(model={"type": "file", "content": "text"}, path="a.txt")
    [point] = nbvene_jupyter._jupyter_server_extension_points()
    assert point["module"] == "nbvene_jupyter"


def test_the_wheel_enables_save_state_and_the_server_extension():
    import tomllib

    root = ROOT
    shared = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    mapped = shared["targets"]["wheel"]["shared-data"]
    settings = json.loads((root / mapped_from(mapped, "overrides.d/nbvene.json")).read_text())
    assert settings["@jupyter-widgets/jupyterlab-manager:plugin"] == {"saveState": True}
    server = json.loads(
        (root / mapped_from(mapped, "jupyter_server_config.d/nbvene.json")).read_text()
    )
    assert server["ServerApp"]["jpserver_extensions"] == {"nbvene_jupyter": True}


def mapped_from(mapped: dict, installed: str) -> str:
    """The repository file the wheel installs at a path ending in `installed`."""
    [source] = [src for src, dest in mapped.items() if dest.endswith(installed)]
    return source
