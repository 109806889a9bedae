"""Every number the heatmap widget shows, checked against the Result: the click panel of a
normalized grid (1 and 0, raw values beside), each facet's own component, the colour bar's
scale and ticks through a live fill, clicks answered from the kept top-k, and why a cell
cannot be clicked."""

import itertools
import math
import types

import pytest
import torch

import nbvene as nv
from nbvene.figures.palette import scale, ticks
from nbvene.widgets import Heatmap

RESTORE = """
base:    "The Eiffel Tower is in"
corrupt: noise 3σ on "The Eiffel" samples=2
restore: block_output layer=* pos=*
metric:  logit_diff(" Paris", " Rome") normalized
"""


@pytest.fixture(scope="module")
def tiny():
    return nv.models.tiny("gpt2")


@pytest.fixture(scope="module")
def normalized(tiny):
    model, tok = tiny
    return nv.run(RESTORE, model=model, tokenizer=tok)


def test_normalized_click_panel_shows_one_and_zero_with_raw_values_beside(normalized):
    hm = Heatmap(normalized)
    hm.selected = {"facet": 0, "row": 2, "col": 1, "n": 1}
    d = hm.detail
    assert d["status"] == "ready", d
    clean, corrupted = float(normalized.clean), float(normalized.corrupted)
    assert (d["clean"]["metric"], d["corrupted"]["metric"]) == (1.0, 0.0)
    assert d["clean"]["raw"] == pytest.approx(clean)
    assert d["corrupted"]["raw"] == pytest.approx(corrupted)
    value = float(normalized.values[1, 2])  # layer 1, pos 2
    assert d["patched"]["metric"] == pytest.approx(value, abs=1e-5)
    assert d["patched"]["raw"] == pytest.approx(corrupted + value * (clean - corrupted), abs=1e-4)


def test_reclicking_the_selected_cell_answers_again(normalized):
    hm = Heatmap(normalized)
    seen = []
    hm.observe(lambda ch: seen.append(ch["new"].get("status")), "detail")
    hm.selected = {"facet": 0, "row": 2, "col": 1, "n": 1}
    hm.selected = {"facet": 0, "row": 2, "col": 1, "n": 2}  # the same cell, a second click
    assert seen == ["computing", "ready", "computing", "ready"]
    assert hm.detail["cell"]["n"] == 2


def test_scale_and_ticks_are_the_palettes_and_hold_the_baselines(normalized):
    hm = Heatmap(normalized)
    assert hm.scale == list(scale(normalized))
    lo, mid, hi = hm.scale
    assert mid == 0.0 and lo <= 0.0 and hi >= 1.0  # normalized: diverging at 0, holds 0 and 1
    assert hm.ticks == ticks(scale(normalized)) and len(hm.ticks) >= 5
    assert all(lo <= t <= hi for t in hm.ticks)
    assert hm.title.startswith(normalized.metric) and "restore block_output" in hm.title


def test_live_fill_never_moves_the_colour_bar_within_the_baselines(normalized):
    """The first batch fixes the scale from the baselines; later batches inside them keep it,
    and a batch that falls outside only widens it."""
    values = normalized.values.clamp(0.0, 1.0)
    empty = torch.full_like(values, math.nan)
    partial = empty.clone()
    partial[0] = values[0]

    def at(v):
        return nv.Result(
            v,
            normalized.axes,
            normalized.spec,
            normalized.metric,
            normalized.clean,
            normalized.corrupted,
        )

    hm = Heatmap(at(empty))
    shown = [list(hm.scale)]
    for v in (partial, values):
        hm.show(at(v))
        shown.append(list(hm.scale))
    assert shown[0] == shown[1] == shown[2] == [0.0, 0.0, 1.0]
    wide = values.clone()
    wide[0, 0] = 1.5
    hm.show(at(wide))
    assert hm.scale == [0.0, 0.0, 1.5]
    hm.show(at(values))  # never shrunk back
    assert hm.scale == [0.0, 0.0, 1.5]


def test_each_causal_trace_facet_names_its_own_component(tiny):
    model, tok = tiny
    trace = nv.causal_trace(
        "The Eiffel Tower is in",
        subject="The Eiffel",
        target=" Paris",
        model=model,
        tokenizer=tok,
        samples=2,
        window=2,
    )
    hm = Heatmap(trace)
    assert hm.facets == ["block", "mlp", "attention"]
    assert hm.meanings[0] == "p(' Paris') with block_output restored at this cell"
    assert hm.meanings[1] == "p(' Paris') with mlp_output (window 2) restored at this cell"
    assert hm.meanings[2] == "p(' Paris') with attention_output (window 2) restored at this cell"
    assert "block_output / mlp_output (window 2) / attention_output (window 2)" in hm.title
    assert 'noise 3σ on "The Eiffel"' in hm.title
    # the subject's tokens are marked: "The", " E", "iff", "el" of "The Eiffel"
    tokens = trace.meta["tokens"][0]
    assert "".join(tokens[i] for i in hm.subject) == "The Eiffel"
    # the probability scale is sequential from the corrupted baseline (ROME's convention)
    lo, mid, hi = hm.scale
    assert mid == pytest.approx(float(trace.corrupted))
    assert lo == pytest.approx(min(mid, float(trace.values.min())))
    assert hi == pytest.approx(max(float(trace.clean), float(trace.values.max())))


def test_click_answers_from_the_kept_top_k_without_the_model(normalized, tiny):
    _, tok = tiny
    k = 4
    shape = (*normalized.values.shape, k)
    ids = torch.arange(torch.Size(shape).numel()).reshape(shape) % 50 + 10
    probs = torch.linspace(0.9, 0.1, k).expand(shape).contiguous()
    kept = nv.Result(
        normalized.values,
        normalized.axes,
        normalized.spec,
        normalized.metric,
        normalized.clean,
        normalized.corrupted,
        top={"ids": ids, "probs": probs},
    )
    # a rerun that cannot run: the answer must come from the kept top-k alone
    kept.rerun = type("NoModel", (), {"tokenizer": tok, "__call__": None})()
    hm = Heatmap(kept)
    hm.selected = {"facet": 0, "row": 3, "col": 1, "n": 1}
    d = hm.detail
    assert d["status"] == "ready", d
    top = d["patched"]["top"]
    assert [t["id"] for t in top] == ids[1, 3].tolist()
    assert [t["p"] for t in top] == pytest.approx(probs[1, 3].tolist())
    assert [t["token"] for t in top] == [tok.decode([i]) for i in ids[1, 3].tolist()]
    assert d["patched"]["metric"] == pytest.approx(float(normalized.values[1, 3]))
    assert (d["clean"]["metric"], d["corrupted"]["metric"]) == (1.0, 0.0)


def test_a_steering_sweep_says_why_its_cells_cannot_be_clicked():
    spec = nv.parse(
        'base: "a b"\nsteer: block_output layer=1 by {v} * 0..4 step 2\nmetric: p(" a")'
    )
    res = nv.Result(
        torch.tensor([0.1, 0.2, 0.3]),
        (nv.results.Axis("strength", (0, 2, 4)),),
        spec,
        'p(" a")',
        None,
        torch.tensor([0.1]),
    )
    hm = Heatmap(res)
    hm.selected = {"facet": 0, "row": 1, "col": 0, "n": 1}
    assert hm.detail["status"] == "error"
    assert "steering sweep" in hm.detail["error"] and "keeps no plan" not in hm.detail["error"]


def test_a_live_restore_sweeps_colour_bar_is_fixed_by_its_first_batch_and_only_widens(tiny):
    """A real sweep drawn batch by batch: after the first batch (which brings the baselines)
    the scale is the baselines' span widened by the values measured so far, never narrower
    than the scale before it, and ends where the final Result's own scale is."""
    from nbvene.widgets.live import LiveSweep

    model, tok = tiny
    spec = RESTORE.replace(" normalized", "")
    final = nv.run(spec, model=model, tokenizer=tok)
    empty = nv.Result(torch.full_like(final.values, math.nan), final.axes, final.spec, final.metric)
    sweep = LiveSweep(empty, every=0.0)
    sweep.widget.live_display = types.SimpleNamespace(update=lambda result: None)  # no kernel
    drawn = []

    def record(done, total, partial):
        sweep(done, total, partial)
        drawn.append((list(sweep.widget.scale), partial))

    again = nv.run(spec, model=model, tokenizer=tok, max_batch=2, progress=record)
    sweep.finish(again, stopped=False)
    assert len(drawn) >= 3
    for (before, _), (after, _) in itertools.pairwise(drawn):
        assert after[0] <= before[0] and after[2] >= before[2]  # only ever widened
        assert after[1] == before[1]  # the centre never moves
    for shown, partial in drawn:
        held = [float(partial.corrupted), float(partial.clean)]
        held += [v for v in partial.values.reshape(-1).tolist() if v == v]
        assert shown[0] == pytest.approx(min([shown[1], *held]))
        assert shown[2] == pytest.approx(max([shown[1], *held]))
    assert sweep.widget.scale == pytest.approx(list(scale(again)))


def test_a_path_patching_cell_can_be_clicked(tiny):
    """Path patching runs a multi-source spec: re-running one cell runs its named sources too."""
    model, tok = tiny
    res = nv.path_patch(
        "When John and Mary went, John gave to",
        "When John and Mary went, Mary gave to",
        senders="z layer=* head=*",
        receivers="q layer=1 head=0 pos=-1",
        metric='logit_diff(" Mary", " John")',
        model=model,
        tokenizer=tok,
    )
    hm = Heatmap(res)
    assert (hm.row_axis, hm.col_axis) == ("layer", "head")
    for n, (layer, head) in enumerate(((0, 0), (1, 3)), start=1):
        hm.selected = {"facet": 0, "row": layer, "col": head, "n": n}
        assert hm.detail["status"] == "ready", hm.detail
        want = float(res.values[layer, head])
        assert hm.detail["patched"]["metric"] == pytest.approx(want, abs=1e-5)
        assert len(hm.detail["patched"]["top"]) == 5


def test_example_facets_say_what_the_sweep_did(tiny):
    model, tok = tiny
    res = nv.run(
        'base: ["The Eiffel Tower is in", "The Colosseum is in"]\n'
        'source: ["The Colosseum is in", "The Eiffel Tower is in"]\n'
        "patch: block_output layer=* pos=*\n"
        'metric: logit_diff(" Paris", " Rome")',
        model=model,
        tokenizer=tok,
    )
    hm = Heatmap(res)
    assert hm.facet_axis == "example" and hm.facets == ["0", "1"]
    want = "logit_diff(' Paris', ' Rome') with block_output patched at this cell"
    assert hm.meanings == [want, want]
