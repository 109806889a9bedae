"""The steering panel shell: sliders bound to a Python callback, debounced in the browser, with
request ids so a busy kernel is never flooded and a stale answer never replaces a newer one.

Displayed, it answers its first values at once (the text at ×1 shows before a slider moves) and
brings a static form beside the widget's view: the generated texts as HTML and plain text, what
GitHub, nbviewer, nbconvert, an untrusted JupyterLab and a reopened notebook show."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from html import escape

import anywidget
import traitlets

from nbvene.errors import NbveneError
from nbvene.figures.view import visible
from nbvene.widgets.frontend import esm

HERE = pathlib.Path(__file__).parent
SLIDER_KEYS = {"label", "min", "max", "step", "value"}


class SteeringPanel(anywidget.AnyWidget):
    """Sliders (one per steering vector) whose values go to `callback(values) -> dict`, run in
    the kernel; the panel shows the answer's columns of tokens.

    >>> panel = SteeringPanel(
    ...     sliders=[{"label": "kind−cruel · block_output L12",
    ...               "min": -4.0, "max": 4.0, "step": 0.5, "value": 1.0}],
    ...     callback=lambda values: {"columns": [], "note": f"strength {values[0]}"},
    ...     title="I think that you are")
    >>> panel.values
    [1.0]
    """

    _esm = esm("panel")
    _css = HERE / "panel.css"
    sliders = traitlets.List(traitlets.Dict()).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    values = traitlets.List(traitlets.Float()).tag(sync=True)
    # set by the browser: {"id": n, "values": [...]}, n increasing
    request = traitlets.Dict().tag(sync=True)
    # set here: {"id": n, "values": [...], **callback(values)} or {"id": n, "error": "..."}
    answer = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        sliders: list[dict],
        callback: Callable[[list[float]], dict],
        title: str = "",
        **kwargs,
    ):
        sliders = [_slider(s, i) for i, s in enumerate(sliders)]
        if not callable(callback):
            raise NbveneError(
                f"callback must be callable, got {type(callback).__name__}",
                hint="pass a function fn(values: list[float]) -> dict",
            )
        super().__init__(
            sliders=sliders, title=title, values=[s["value"] for s in sliders], **kwargs
        )
        self.callback = callback
        self._newest = 0  # the newest request id seen: an older one is not computed
        self.observe(self._on_request, "request")

    def _on_request(self, change) -> None:
        request = change["new"]
        rid = int(request.get("id", 0))
        if rid <= self._newest:  # a repeat, or older than one already taken
            return
        self._newest = rid
        values = [float(v) for v in request.get("values", [])]
        self.values = values
        answer = self._answer(rid, values)
        if rid == self._newest:  # a newer request was taken while this one ran: drop it
            self.answer = answer

    def _answer(self, rid: int, values: list[float]) -> dict:
        try:
            found = self.callback(values)
            return {"id": rid, "values": values, **(found or {})}
        except Exception as e:  # the user's generation code failed: show it in the panel
            return {"id": rid, "error": f"{type(e).__name__}: {e}"}

    def _repr_mimebundle_(self, **kwargs):
        """The widget's view and, beside it, the static form of the newest answer. Shown
        before any slider moved, the panel first answers its starting values (request id 0,
        which the browser draws as its own)."""
        if not self.answer:
            self.answer = self._answer(0, list(self.values))
        found = super()._repr_mimebundle_(**kwargs)
        data, metadata = found if isinstance(found, tuple) else (found or {}, {})
        data = {**data, **static_form(self.title, self.sliders, self.answer)}
        return (data, metadata) if metadata else data


def static_form(title: str, sliders: list[dict], answer: dict) -> dict:
    """The panel without a kernel, `{"text/plain", "text/html"}`: the title, each slider at the
    answer's value, and the answer's columns of generated text as prose (marked tokens in
    `<mark>`; a token that is only whitespace shown with visible signs, as it would vanish)."""
    values = answer.get("values") or [s["value"] for s in sliders]
    settings = [f"{s['label']} = {v:g}" for s, v in zip(sliders, values, strict=False)]
    columns = answer.get("columns") or []
    lines = [title] if title else []
    lines += settings
    lines += [f"{c.get('title', '')}: " + "".join(_plain(t) for t in c["tokens"]) for c in columns]
    head = f"<b>{escape(title)}</b><br>" if title else ""
    cells = "".join(
        "<td style='vertical-align:top;padding:4px 12px;white-space:pre-wrap'>"
        f"<b>{escape(c.get('title', ''))}</b><br>{''.join(_html(t) for t in c['tokens'])}</td>"
        for c in columns
    )
    notes = [answer[k] for k in ("error", "note") if answer.get(k)]
    lines += notes
    html = (
        f"<div class='nbvene-panel-static'>{head}{escape(' · '.join(settings))}"
        f"<table><tr>{cells}</tr></table>"
        + "".join(f"<div>{escape(n)}</div>" for n in notes)
        + "</div>"
    )
    return {"text/plain": "\n".join(lines), "text/html": html}


def _plain(token: dict) -> str:
    text = token["text"]
    return visible(text) if not text.strip() else text


def _html(token: dict) -> str:
    text = escape(_plain(token))
    return f"<mark>{text}</mark>" if token.get("mark") else text


def _slider(spec: dict, index: int) -> dict:
    """One slider's dict, checked: label, min, max, step and value, with min <= value <= max."""
    if not isinstance(spec, dict) or not {"label", "min", "max"} <= set(spec):
        raise NbveneError(
            f"slider {index} must be a dict with label, min and max (step, value optional)",
            hint='{"label": "kind−cruel · block_output L12", "min": -4, "max": 4, "step": 0.5}',
        )
    unknown = set(spec) - SLIDER_KEYS
    if unknown:
        raise NbveneError(f"slider {index} has unknown keys {sorted(unknown)}")
    lo, hi = float(spec["min"]), float(spec["max"])
    step = float(spec.get("step", (hi - lo) / 100 or 1.0))
    value = float(spec.get("value", lo))
    if not lo < hi or step <= 0 or not lo <= value <= hi:
        raise NbveneError(
            f"slider {index} ({spec['label']!r}) needs min < max, step > 0 and min <= value <= max",
            hint=f"got min={lo}, max={hi}, step={step}, value={value}",
        )
    return {"label": str(spec["label"]), "min": lo, "max": hi, "step": step, "value": value}
