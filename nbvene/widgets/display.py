"""`view(result)`: the widget that shows a Result (a heatmap, faceted if it has three axes, or
the token view for a result over positions only), and whether a widget can display here.

A Result is plain data: the widget that shows it is kept here, beside it, for as long as the
Result lives (`keep_view`, `live_view`)."""

from __future__ import annotations

import weakref

import anywidget

from nbvene.results import Result
from nbvene.widgets.heatmap import Heatmap
from nbvene.widgets.tokens import TokenView

_VIEWS: dict[int, weakref.ref] = {}
"""The widget shown for each living Result, by the Result's `id`, held weakly (the widget holds
its Result: a strong hold here would keep both forever); an entry goes when its Result does."""


def keep_view(result: Result, widget: anywidget.AnyWidget) -> None:
    """Show `result` with `widget` from now on (the live heatmap its sweep filled in)."""
    key = id(result)
    if key not in _VIEWS:
        weakref.finalize(result, _VIEWS.pop, key, None)
    _VIEWS[key] = weakref.ref(widget)


def _kept(result: Result) -> anywidget.AnyWidget | None:
    found = _VIEWS.get(id(result))
    return found() if found is not None else None


def view(result: Result) -> anywidget.AnyWidget | None:
    """The widget for `result`, made once and kept beside it (so displaying it twice shows one
    widget); None for results no widget draws (collected activations, four or more axes).

    >>> nbvene.widgets.view(res)          # a Heatmap for layer × pos
    """
    kept = _kept(result)
    if kept is not None:
        return kept
    names = [str(a) for a in result.axes]
    if result.values.dim() != len(names) or not 1 <= len(names) <= 3:
        return None
    widget = TokenView(result) if names == ["pos"] else Heatmap(result)
    keep_view(result, widget)
    return widget


def live_view(result: Result):
    """The live display a sweep run with `live=True` showed `result` in (updated in place to be
    the Result's display), or None."""
    return getattr(_kept(result), "live_display", None)


def mimebundle(result: Result) -> tuple[dict, dict]:
    """The widget's part of a notebook display, `(data, metadata)`: the
    `application/vnd.jupyter.widget-view+json` entry, and on Colab the metadata that names its
    custom widget manager (anywidget enables that manager when the widget is made). Both are
    empty where no widget can show or none draws this result; `Result._repr_mimebundle_`
    merges them with the static SVG that viewers without widgets show."""
    if not can_display():
        return {}, {}
    widget = view(result)
    if widget is None:
        return {}, {}
    found = widget._repr_mimebundle_()
    data, metadata = found if isinstance(found, tuple) else (found or {}, {})
    return {k: v for k, v in data.items() if k == WIDGET_VIEW}, metadata or {}


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def can_display() -> bool:
    """Whether a widget can show here: inside a Jupyter kernel (JupyterLab, Notebook 7, VS Code,
    Colab), not in plain Python or IPython in a terminal. `Result._repr_mimebundle_` adds the
    widget's view only then, next to the static SVG that viewers without widgets show."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None
