"""The strength knob: the steering panel's callback. Given slider values it generates the
steered text (cached per strength tuple) beside the baseline (decoded once: the prompt does
not change with the sliders) and answers with the panel's columns, the steered tokens that
depart from the baseline marked."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from torch import nn

from nbvene.bind.steering import Steering
from nbvene.engine.lock import holding
from nbvene.errors import NbveneError
from nbvene.spec import Slider, Spec
from nbvene.steer.generation import Generation, joined
from nbvene.steer.run import generation, steer_plan


class Knob:
    """`knob(values) -> {"columns": [...], "note": ...}`, one value per `slider(...)` in the
    spec, in spec order.

    >>> k = nv.steer.Knob.of(spec, model=model, tokenizer=tok, namespace={"kind": kind})
    >>> k([2.0])["columns"][1]["title"]
    'steered ×2'
    >>> k.panel()  # the live panel (nbvene.widgets.SteeringPanel)
    """

    @classmethod
    def of(
        cls,
        spec: str | Spec,
        *,
        model: nn.Module,
        tokenizer=None,
        namespace: Mapping | None = None,
        sites: Mapping[str, str] | None = None,
        use_cache: bool = True,
    ) -> Knob:
        """The knob of a steering spec with `slider(...)` strengths."""
        steering = steer_plan(
            spec, model=model, tokenizer=tokenizer, namespace=namespace, sites=sites
        )
        return cls(steering, use_cache=use_cache)

    def __init__(self, steering: Steering, *, use_cache: bool = True, keep: int = 64):
        if not steering.sliders:
            raise NbveneError(
                "the knob needs a slider: write by {v} * slider(-4, 4, 1)",
                hint="without sliders, nv.generate shows baseline and steered text",
            )
        # the model is held weakly: a panel kept by the notebook does not keep its memory
        self._model = weakref.ref(steering.model)
        self.steering = replace(steering, model=None)
        self.use_cache, self.keep = use_cache, keep
        self.cache: OrderedDict[tuple[float, ...], Generation] = OrderedDict()
        self.baseline: Generation | None = None

    @property
    def sliders(self) -> list[dict]:
        """One dict per slider, as the panel takes them: label, min, max, step, value."""
        out = []
        for i in self.steering.sliders:
            term = self.steering.terms[i]
            s: Slider = term.strength
            out.append(
                {
                    "label": term.label,
                    "min": s.low,
                    "max": s.high,
                    "step": (s.high - s.low) / 16,
                    "value": s.start,
                }
            )
        return out

    @property
    def start(self) -> list[float]:
        return [s["value"] for s in self.sliders]

    def generation(self, values: Sequence[float]) -> Generation:
        """The baseline and steered generations at these slider values (cached; the baseline
        is decoded once, on the first call)."""
        if len(values) != len(self.steering.sliders):
            raise NbveneError(
                f"{len(values)} slider values for {len(self.steering.sliders)} sliders",
                hint="give one value per slider(...), in spec order",
            )
        key = tuple(round(float(v), 6) for v in values)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        model = self._model()
        if model is None:
            raise NbveneError(
                "the model this knob steers has been deleted, so it cannot generate again",
                hint="load the model and re-run the cell that made the knob",
            )
        rows = self.steering.rows(dict(zip(self.steering.sliders, key, strict=True)))
        steering = replace(self.steering, model=model)
        with holding(model, "the steering knob"):
            if self.baseline is None:
                self.baseline = generation(steering, rows[:1], use_cache=self.use_cache)
            steered = generation(
                steering,
                rows[1:],
                use_cache=self.use_cache,
                has_baseline=False,
                reference=self.baseline.ids[0],
            )
        made = joined(self.baseline, steered)
        self.cache[key] = made
        if len(self.cache) > self.keep:
            self.cache.popitem(last=False)
        return made

    def __call__(self, values: Sequence[float]) -> dict:
        """The panel's answer for these slider values."""
        made = self.generation(values)
        stopped = ", ".join(sorted(set(made.stopped)))
        return {"columns": made.columns(), "note": f"{made.prompt!r} · stopped by {stopped}"}

    def panel(self):
        """The live steering panel (`nbvene.widgets.SteeringPanel`): regenerates as the
        sliders move."""
        from nbvene.widgets import SteeringPanel

        return SteeringPanel(sliders=self.sliders, callback=self, title=self.steering.prompt.text)
