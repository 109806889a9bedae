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

MISSING = "#bdbdbd"
"""Cells with no value (NaN): a mid grey that no palette colour comes close to."""


class Scale(NamedTuple):
    """The colour scale of a figure: `lo` is the darkest blue, `hi` the darkest red, and
    `centre` the white in between, with `hi - centre == centre - lo`."""

    lo: float
    centre: float
    hi: float


class Centre(NamedTuple):
    """The value a figure is centred on, and what it means (shown in the legend)."""

    value: float
    meaning: str


def centre(result: Result) -> Centre:
    """Where the white of the palette sits for `result`; the first rule that applies wins.

    1. a `normalized` metric: 0, which is the corrupted (or base) run by construction;
    2. a restore (`restore:` or a `corrupt:` line): the corrupted baseline `result.corrupted`,
       so red means "restoring this brought the answer back" and blue "pushed it further away";
    3. a metric whose registry entry fixes a centre (`nbvene.spec.metrics`): `logit_diff` at 0,
       because its sign says which of the two answers wins;
    4. any other metric with a baseline (`p`, `logprob`, `logit`, `kl` of a patch): the base
       run's value `result.corrupted`, i.e. the run with nothing changed;
    5. no baseline (`collect:`, hand-built results): 0.

    With several examples the baseline is their mean, so one legend serves every facet.
    """
    spec, metric = result.spec, result.metric or ""
    baseline = _mean(result.corrupted)
    if metric.endswith(" normalized"):
        return Centre(0.0, "0 = corrupted run, 1 = clean run")
    restores = spec.corrupt is not None or any(i.verb == "restore" for i in spec.interventions)
    if restores and baseline is not None:
        return Centre(baseline, f"{baseline:.4g} = corrupted baseline")
    fixed = lookup(re.match(r"\w*", metric).group())
    if fixed is not None and fixed.centre is not None:
        return Centre(fixed.centre, fixed.centre_meaning)
    if baseline is not None:
        return Centre(baseline, f"{baseline:.4g} = base run, nothing changed")
    return Centre(0.0, "0")


def scale(result: Result) -> Scale:
    """The colour scale for `result`: centred by `centre(result)` and symmetric around it, wide
    enough for its farthest finite value (over all facets, so facets share one legend).

    >>> lo, mid, hi = scale(res)
    """
    mid = centre(result).value
    finite = [v for v in result.values.detach().float().reshape(-1).tolist() if math.isfinite(v)]
    half = max((abs(v - mid) for v in finite), default=0.0)
    # a flat result has no spread: any positive half-width paints every cell white
    half = half if half > 0 else 1.0
    return Scale(mid - half, mid, mid + half)


def colour(value: float, scale: Scale) -> str:
    """The palette colour of `value` as `#rrggbb`: linear in RGB between the stops, clamped at
    the ends, MISSING for NaN.

    >>> colour(0.0, Scale(-1.0, 0.0, 1.0))
    '#f7f7f7'
    """
    if math.isnan(value):
        return MISSING
    t = 0.5 + (value - scale.centre) / (2 * (scale.hi - scale.centre))
    t = min(1.0, max(0.0, t)) * (len(PALETTE) - 1)
    i = min(int(t), len(PALETTE) - 2)
    f = t - i
    rgb = (round(a + (b - a) * f) for a, b in zip(PALETTE[i], PALETTE[i + 1], strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _mean(baseline) -> float | None:
    if baseline is None:
        return None
    values = [v for v in baseline.detach().float().reshape(-1).tolist() if math.isfinite(v)]
    return sum(values) / len(values) if values else None
