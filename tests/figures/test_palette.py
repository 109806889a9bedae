"""The shared palette: its stops, where it is centred for each kind of result, and the scale."""

import itertools
import math

import pytest
import torch

import nbvene as nv
from nbvene.figures import MISSING, PALETTE, Scale, centre, colour, scale
from nbvene.figures.palette import ticks
from nbvene.results import Axis, Result

PATCH = 'base: "a b c"\nsource: "a b d"\npatch: block_output layer=* pos=*\n'
RESTORE = 'base: "a b c"\ncorrupt: noise 3σ on "a"\nrestore: block_output layer=* pos=*\n'


def _result(spec: str, metric: str, values, corrupted=None) -> Result:
    values = torch.tensor(values, dtype=torch.float32)
    axes = (
        Axis("layer", range(values.shape[0])),
        Axis("pos", ["a", " b", " c"][: values.shape[1]]),
    )
    base = None if corrupted is None else torch.tensor(corrupted)
    return Result(values, axes, nv.parse(spec + f"metric: {metric}"), metric, None, base)


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def test_palette_is_rdbu_dark_blue_to_white_to_dark_red():
    assert len(PALETTE) == 11
    assert PALETTE[5] == (247, 247, 247)  # the centre is near-white
    lows, highs = PALETTE[:5], PALETTE[6:]
    assert all(b > r for r, _, b in lows) and all(r > b for r, _, b in highs)
    # lightness falls away from the centre on both sides (readable in grey too)
    grey = [sum(c) for c in PALETTE]
    assert grey[:6] == sorted(grey[:6]) and grey[5:] == sorted(grey[5:], reverse=True)


def test_colour_hits_the_stops_and_clamps():
    s = Scale(-1.0, 0.0, 1.0)
    for i, rgb in enumerate(PALETTE):
        assert colour(-1.0 + i * 0.2, s) == _hex(rgb)
    assert colour(-7.0, s) == _hex(PALETTE[0]) and colour(9.0, s) == _hex(PALETTE[-1])
    assert colour(math.nan, s) == MISSING
    # halfway between two stops is the mean of their channels
    mid = colour(0.1, s)
    assert mid == _hex(round((a + b) / 2) for a, b in zip(PALETTE[5], PALETTE[6], strict=True))


def test_logit_diff_of_a_patch_diverges_at_zero_with_one_slope():
    res = _result(PATCH, 'logit_diff(" a", " b")', [[0.5, -2.0], [1.0, 0.25]], corrupted=0.7)
    assert centre(res).value == 0.0
    assert scale(res) == Scale(-2.0, 0.0, 1.0)  # the values' and baselines' span
    assert scale(res).half == 2.0
    assert colour(0.0, scale(res)) == _hex(PALETTE[5])
    assert colour(-2.0, scale(res)) == _hex(PALETTE[0])
    assert colour(2.0, scale(res)) == _hex(PALETTE[-1])  # not reached, yet the same meaning
    # one slope both sides: +1 is as strong as -1, half-way to the end of the ramp
    assert colour(1.0, scale(res)) == colour(0.5, Scale(-1.0, 0.0, 1.0))


def test_restore_is_centred_at_the_corrupted_baseline():
    res = _result(RESTORE, 'p(" a")', [[0.1, 0.4], [0.3, 0.2]], corrupted=0.25)
    c = centre(res)
    assert c.value == pytest.approx(0.25) and "corrupted" in c.meaning
    lo, mid, hi = scale(res)
    assert (lo, mid, hi) == pytest.approx((0.1, 0.25, 0.4))
    assert colour(0.25, scale(res)) == _hex(PALETTE[5])


def test_normalized_and_other_metrics_and_collect():
    normalized = _result(RESTORE, 'p(" a") normalized', [[0.0, 1.0]], corrupted=0.3)
    assert centre(normalized).value == 0.0
    # a patch measured with p: the base run's value is "nothing changed"
    probs = _result(PATCH, 'p(" a")', [[0.1, 0.5]], corrupted=[0.2, 0.4])
    assert centre(probs).value == pytest.approx(0.3)  # mean over examples
    collected = Result(
        torch.ones(2, 3),
        (Axis("layer", (0, 1)),),
        nv.parse('base: "a"\ncollect: block_output layer=*'),
    )
    assert centre(collected).value == 0.0 and scale(collected) == Scale(0.0, 0.0, 1.0)


def test_flat_and_nan_results_still_have_a_scale():
    flat = _result(PATCH, 'logit_diff(" a", " b")', [[0.0, 0.0]])
    assert scale(flat) == Scale(-1.0, 0.0, 1.0)
    holes = _result(PATCH, 'logit_diff(" a", " b")', [[math.nan, 3.0]])
    assert scale(holes) == Scale(0.0, 0.0, 3.0)


def _with_clean(res: Result, clean: float) -> Result:
    res.clean = torch.tensor([clean])
    return res


def test_probabilities_are_sequential_from_the_corrupted_baseline():
    """ROME's convention: white at the corrupted run, red up to the clean run; no impossible
    half below it (the issue's legend ran from -0.80 to 0.84 for p(' Paris'))."""
    res = _with_clean(_result(RESTORE, 'p(" a")', [[0.02, 0.3], [0.05, 0.6]], corrupted=0.01), 0.8)
    s = scale(res)
    assert s == pytest.approx(Scale(0.01, 0.01, 0.8))
    assert colour(0.01, s) == _hex(PALETTE[5]) and colour(0.8, s) == _hex(PALETTE[-1])
    assert all(0.0 <= t <= 0.8 for t in ticks(s))


def test_normalized_diverges_at_zero_and_holds_zero_and_one():
    res = _result(RESTORE, 'p(" a") normalized', [[0.2, 0.5]], corrupted=0.3)
    assert scale(res) == Scale(0.0, 0.0, 1.0)
    over = _result(RESTORE, 'p(" a") normalized', [[-0.25, 1.5]], corrupted=0.3)
    assert scale(over) == Scale(-0.25, 0.0, 1.5)


def test_the_scale_is_fixed_by_the_baselines_before_any_cell_and_only_widens():
    """A live fill: the first batch's scale is the last one's when the values stay within the
    baselines; a value outside widens it, and a narrower later batch never shrinks it."""
    spec = 'p(" a")'
    empty = _with_clean(_result(RESTORE, spec, [[math.nan] * 3] * 2, corrupted=0.01), 0.8)
    first = _with_clean(_result(RESTORE, spec, [[0.3, math.nan, math.nan]] * 2, 0.01), 0.8)
    full = _with_clean(_result(RESTORE, spec, [[0.3, 0.02, 0.7]] * 2, 0.01), 0.8)
    assert scale(empty) == scale(first) == scale(full) == pytest.approx(Scale(0.01, 0.01, 0.8))
    wider = _with_clean(_result(RESTORE, spec, [[0.9, 0.0, 0.5]] * 2, 0.01), 0.8)
    assert scale(wider) == pytest.approx(Scale(0.0, 0.01, 0.9))
    assert scale(full, within=scale(wider)) == scale(wider)


@pytest.mark.parametrize(
    "lo, mid, hi",
    [(0.0, 0.0, 1.0), (-9.06, 0.0, 4.81), (0.0158, 0.0158, 0.027), (-1e-5, 0.0, 3e-5), (2, 2, 900)],
)
def test_colour_bar_has_at_least_five_round_ticks_inside_the_scale(lo, mid, hi):
    found = ticks(Scale(lo, mid, hi))
    assert len(found) >= 5 and found == sorted(found)
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in found)
    steps = {round(b - a, 12) for a, b in itertools.pairwise(found)}
    assert len(steps) == 1  # evenly spaced


def test_a_real_restore_paints_its_baseline_white():
    model, tok = nv.models.tiny("gpt2")
    res = nv.run(RESTORE + 'metric: p(" c")', model=model, tokenizer=tok)
    s = scale(res)
    assert s.centre == pytest.approx(float(res.corrupted))
    assert colour(float(res.corrupted), s) == _hex(PALETTE[5])
    held = [*res.values.reshape(-1).tolist(), float(res.corrupted), float(res.clean)]
    assert (s.lo, s.hi) == pytest.approx((min(held), max(held)))
