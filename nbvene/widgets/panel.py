"""The steering panel shell: sliders bound to a Python callback, debounced in the browser, with
request ids so a busy kernel is never flooded and a stale answer never replaces a newer one."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import anywidget
import traitlets

from nbvene.errors import NbveneError
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
        try:
            found = self.callback(values)
            answer = {"id": rid, "values": values, **(found or {})}
        except Exception as e:  # the user's generation code failed: show it in the panel
            answer = {"id": rid, "error": f"{type(e).__name__}: {e}"}
        if rid == self._newest:  # a newer request was taken while this one ran: drop it
            self.answer = answer


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
