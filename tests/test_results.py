"""What a Result shows in a notebook: text, the static SVG and HTML always, the widget's view
only where a kernel can show one, and never an error for want of widgets."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import pytest

import nbvene as nv
from nbvene.figures.page import INERT
from tests.outputs import static_svg

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
STATIC = {"text/plain", "text/html"}
SPEC = 'base: "a b c"\nsource: "a b d"\npatch: block_output layer=* pos=*\nmetric: kl'


@pytest.fixture(scope="module")
def result():
    model, tok = nv.models.tiny("gpt2")
    return nv.run(SPEC, model=model, tokenizer=tok)


def test_outside_a_kernel_the_bundle_is_the_static_figure(result):
    bundle = result._repr_mimebundle_()
    assert set(bundle) == STATIC
    figure = static_svg(bundle)  # the SVG once, as an <img> every viewer keeps
    ET.fromstring(figure)  # a well-formed SVG document
    assert result.to_svg() == nv.figures.svg(result)
    assert figure == INERT.sub("", result.to_svg())  # less only what an image cannot use
    assert "<svg" not in bundle["text/html"]  # no inline SVG for a sanitiser to strip
    assert bundle["text/html"] == result._repr_html_()
    assert bundle["text/plain"] == repr(result)


def test_without_anywidget_the_bundle_is_the_static_figure(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "anywidget", None)  # `import anywidget` raises ImportError
    for name in [m for m in sys.modules if m.startswith("nbvene.widgets")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(nv, "widgets", raising=False)
    with pytest.raises(ImportError):
        import nbvene.widgets  # noqa: F401
    assert set(result._repr_mimebundle_()) == STATIC


def test_in_a_kernel_the_widget_view_joins_the_static_figure(result, monkeypatch):
    from nbvene import widgets  # anywidget is a runtime dependency

    # the module that decides whether a widget can show here, whatever its name
    deciding = sys.modules[widgets.mimebundle.__module__]
    monkeypatch.setattr(deciding, "can_display", lambda: True)
    found = result._repr_mimebundle_()
    data = found[0] if isinstance(found, tuple) else found
    assert set(data) == {*STATIC, WIDGET_VIEW}
    view = data[WIDGET_VIEW]
    assert view["version_major"] == 2 and len(view["model_id"]) == 32
    assert static_svg(data) == INERT.sub("", result.to_svg())  # the static image is still there


def test_the_widget_is_kept_beside_the_result_not_on_it(result):
    import gc

    import torch

    from nbvene.results import Result
    from nbvene.widgets.display import _VIEWS, keep_view, live_view, view

    widget = view(result)
    assert widget is not None and view(result) is widget
    assert live_view(result) is None  # not run with live=True
    assert not any(name.startswith("_") for name in vars(result))

    class Shown:  # a widget that was displayed live
        live_display = "the display"

    made = Result(torch.zeros(2), (), result.spec)
    shown = Shown()
    keep_view(made, shown)
    assert view(made) is shown and live_view(made) == "the display"
    key = id(made)
    del made
    gc.collect()
    assert key not in _VIEWS  # the entry goes with its Result; the widget is held weakly
