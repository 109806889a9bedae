"""A Jupyter server extension that keeps saved notebooks free of dead nbvene widgets.

JupyterLab and Notebook 7 save a widget's state only while its kernel holds it: reopen a saved
notebook, change anything and save it without re-running, and the widget state is saved empty,
so the next reopening shows "Error displaying widget: model not found" where every figure was
(jupyterlab-manager never falls back to the output's other forms). On every save this hook
drops the widget view from each nbvene output whose widget the notebook's saved state does not
hold; the output keeps its static form (the figure, the steering panel's texts), which is then
what the notebook shows. Live widgets in the open page are not touched, and outputs of other
libraries are left as they are.

It is a package of its own, beside `nbvene`, so that the Jupyter server loads it without torch.
The wheel enables it (`etc/jupyter/jupyter_server_config.d/nbvene.json`); turn it off with
`jupyter server extension disable nbvene_jupyter`.
"""

from __future__ import annotations

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STATIC_FORMS = ('class="nbvene-result"', "class='nbvene-panel-static'")
"""What marks an nbvene output's static form in its text/html (a Result, the steering panel)."""


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "nbvene_jupyter"}]


def _load_jupyter_server_extension(serverapp) -> None:
    serverapp.contents_manager.register_pre_save_hook(pre_save)


def pre_save(model: dict, **_) -> None:
    """A contents manager's pre-save hook: `model` is what is being saved, changed in place."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        drop_dead_views(model["content"])


def drop_dead_views(nb: dict) -> int:
    """Drop the widget view of every nbvene output (in nbformat's JSON, `nb`) whose model the
    saved widget state does not hold; return how many were dropped."""
    widgets = nb.get("metadata", {}).get("widgets", {})
    saved = widgets.get(WIDGET_STATE, {}).get("state", {}) if isinstance(widgets, dict) else {}
    dropped = 0
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data", {})
            view = data.get(WIDGET_VIEW)
            html = data.get("text/html", "")
            html = "".join(html) if isinstance(html, list) else html
            if not isinstance(view, dict) or view.get("model_id") in saved:
                continue
            if any(mark in html for mark in STATIC_FORMS):
                del data[WIDGET_VIEW]
                dropped += 1
    return dropped
