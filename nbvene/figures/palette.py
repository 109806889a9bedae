"""The diverging palette every nbvene figure shares, and where its centre sits for a Result.

The SVG figures, the Altair charts and the widgets all colour a value with `colour(v, scale(res))`,
so a colour means the same thing in every view of a result.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, NamedTuple

from nbvene.spec.metrics import lookup

if TYPE_CHECKING:
    from nbvene.results import Result

PALETTE: tuple[tuple[int, int, int], ...] = (
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
)
"""ColorBrewer's 11-class RdBu (Brewer & Harrower), ordered low → high: dark blue, white, dark red.

Why this one: ColorBrewer marks RdBu as colour-blind safe (blue against red stays distinct for
protan, deutan and tritan viewers, unlike red–green), it prints in grey as a light-to-dark ramp
on each side, and a near-white centre makes "no effect" look like nothing. Blue is below the
centre and red above, as in most causal-tracing and patching figures."""

PALETTE_DARK: tuple[tuple[int, int, int], ...] = (
    (146, 197, 222),
    (113, 170, 210),
    (67, 147, 195),
    (44, 110, 160),
    (35, 70, 105),
    (48, 48, 48),
    (110, 40, 45),
    (165, 45, 50),
    (214, 96, 77),
    (244, 140, 110),
    (253, 190, 160),
)
"""The same blue-below, red-above ramp for a dark page (JupyterLab Dark): the centre is a dark
grey near the page, not a glaring white, and colour grows brighter away from it, so "no effect"
still looks like nothing. The widget picks it from the page's own background colour."""

MISSING = "#bdbdbd"
"""Cells with no value (NaN): a mid grey that no palette colour comes close to."""


class Scale(NamedTuple):
    """The colour scale of a figure: values run from `lo` to `hi`, and `centre` is the palette's
    middle (white). One slope serves both sides, `max(hi - centre, centre - lo)` to the end of
    the ramp, so equal distances from the centre look equally strong: a scale with
    `lo == centre` is sequential (white to red, ROME's convention for probabilities), one with
    `lo < centre < hi` diverging."""

    lo: float
    centre: float
    hi: float

    @property
    def half(self) -> float:
        """The distance from the centre that reaches the end of the ramp."""
        return max(self.hi - self.centre, self.centre - self.lo) or 1.0


class Centre(NamedTuple):
    """The value a figure is centred on, and what it means (shown in the legend)."""

    value: float
    meaning: str


def centre(result: Result) -> Centre:
    """Where the white of the palette sits for `result`; the first rule that applies wins.

    1. a `normalized` metric: 0, which is the corrupted (or base) run by construction;
    2. a metric whose registry entry fixes a centre (`nbvene.spec.metrics`): `logit_diff` at 0,
       because its sign says which of the two answers wins (a difference diverges at 0);
    3. a restore (`restore:` or a `corrupt:` line): the corrupted baseline `result.corrupted`,
       so red means "restoring this brought the answer back" (for a probability the scale
       starts there: ROME's convention);
    4. any other metric with a baseline (`p`, `logprob`, `logit`, `kl` of a patch): the base
       run's value `result.corrupted`, i.e. the run with nothing changed;
    5. no baseline (`collect:`, hand-built results): 0.

    With several examples the baseline is their mean, so one legend serves every facet.
    """
    spec, metric = result.spec, result.metric or ""
    baseline = _mean(result.corrupted)
    if metric.endswith(" normalized"):
        return Centre(0.0, "0 = corrupted run, 1 = clean run")
    fixed = lookup(re.match(r"\w*", metric).group())
    if fixed is not None and fixed.centre is not None:
        return Centre(fixed.centre, fixed.centre_meaning)
    restores = spec.corrupt is not None or any(i.verb == "restore" for i in spec.interventions)
    if restores and baseline is not None:
        return Centre(baseline, f"{baseline:.4g} = corrupted baseline")
    if baseline is not None:
        return Centre(baseline, f"{baseline:.4g} = base run, nothing changed")
    return Centre(0.0, "0")


def baselines(result: Result) -> tuple[float, ...]:
    """The values a scale must hold before any cell is measured: the clean and corrupted runs
    (their means over examples), or 0 and 1 for a `normalized` metric, which they are there."""
    if (result.metric or "").endswith(" normalized"):
        return (0.0, 1.0)
    return tuple(v for v in (_mean(result.corrupted), _mean(result.clean)) if v is not None)


def scale(result: Result, within: Scale | None = None) -> Scale:
    """The colour scale for `result`: from its centre and baselines, fixed before the first
    cell is drawn, widened only where a value falls outside (over all facets, so facets share
    one legend). `within`, the scale already shown, is never shrunk: a live sweep's colours
    keep their meaning from the first batch to the last.

    >>> lo, mid, hi = scale(res)
    """
    mid = centre(result).value
    finite = [v for v in result.values.detach().float().reshape(-1).tolist() if math.isfinite(v)]
    held = [mid, *baselines(result), *finite, *(within or ())]
    lo, hi = min(held), max(held)
    if lo == hi:  # a flat result has no spread: any width paints every cell white
        lo, hi = mid - 1.0, mid + 1.0
    return Scale(lo, mid, hi)


def ticks(scale: Scale, least: int = 5) -> list[float]:
    """At least `least` round values between `lo` and `hi` for the colour bar (steps of 1, 2,
    2.5 or 5 times a power of ten), the widest step that still gives that many.

    >>> ticks(Scale(0.0, 0.0, 1.0))
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    span = scale.hi - scale.lo
    if not span > 0:
        return [scale.lo]
    power = 10.0 ** math.floor(math.log10(span))
    for step in (s * power for s in (5, 2.5, 2, 1, 0.5, 0.25, 0.2, 0.1, 0.05)):
        first, last = math.ceil(scale.lo / step - 1e-9), math.floor(scale.hi / step + 1e-9)
        if last - first + 1 >= least:
            return [float(f"{k * step:.10g}") for k in range(first, last + 1)]
    return [scale.lo + span * i / (least - 1) for i in range(least)]


def colour(value: float, scale: Scale, palette=PALETTE) -> str:
    """The palette colour of `value` as `#rrggbb`: linear in RGB between the stops, one slope
    on both sides of the centre (`Scale.half`), clamped at the ends, MISSING for NaN.

    >>> colour(0.0, Scale(-1.0, 0.0, 1.0))
    '#f7f7f7'
    """
    if math.isnan(value):
        return MISSING
    t = 0.5 + (value - scale.centre) / (2 * scale.half)
    t = min(1.0, max(0.0, t)) * (len(palette) - 1)
    i = min(int(t), len(palette) - 2)
    f = t - i
    rgb = (round(a + (b - a) * f) for a, b in zip(palette[i], palette[i + 1], strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _mean(baseline) -> float | None:
    if baseline is None:
        return None
    values = [v for v in baseline.detach().float().reshape(-1).tolist() if math.isfinite(v)]
    return sum(values) / len(values) if values else None
