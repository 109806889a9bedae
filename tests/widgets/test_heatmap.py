"""The heatmap, token view and live sweeps on the Python side: layout, bytes on the wire,
click-through against the sweep's own values, partial results, Stop, display bundles."""

import itertools
import math
import sys
import types

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers

import nbvene as nv
from nbvene.figures.palette import PALETTE, scale
from nbvene.widgets import Heatmap, TokenView, mimebundle, view
from nbvene.widgets.transport import decode, encode

PATCH = """
base:   "The Eiffel Tower is in"
source: "The Colosseum is in"
patch:  block_output layer=* pos=*
metric: logit_diff(" Paris", " Rome")
"""
HEADS = """
base:   "The Eiffel Tower is in"
source: "The Colosseum is in"
patch:  head_attention_value_output layer=* head=* pos=-1
metric: logit_diff(" Paris", " Rome")
"""


@pytest.fixture(scope="module")
def tiny():
    return nv.models.tiny("gpt2")


@pytest.fixture(scope="module")
def res(tiny):
    model, tok = tiny
    return nv.run(PATCH, model=model, tokenizer=tok)


def test_encode_decode_round_trip_is_exact():
    x = torch.randn(3, 4, 5)
    x[1, 2, 3] = float("nan")
    state = encode(x)
    assert state["shape"] == [3, 4, 5] and state["dtype"] == "float32"
    assert isinstance(state["data"], bytes) and len(state["data"]) == 60 * 4
    back = decode({**state, "data": memoryview(state["data"])})
    assert np.array_equal(back, x.numpy(), equal_nan=True)
    assert decode(encode(np.arange(6).reshape(2, 3), "int32")).tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="dtype"):
        encode(x, "float16")


def test_values_travel_as_a_binary_buffer_not_json(res):
    state, paths, buffers = _remove_buffers(Heatmap(res).get_state())
    assert ["values", "data"] in paths
    assert state["values"]["shape"] == [1, 7, 2]  # facets × tokens × layers
    buf = buffers[paths.index(["values", "data"])]
    got = np.frombuffer(bytes(buf), dtype="<f4").reshape(1, 7, 2)
    assert np.allclose(got[0], res.values.T.numpy())


def test_layout_tokens_down_the_side_layers_across(res):
    hm = Heatmap(res)
    assert (hm.row_axis, hm.col_axis, hm.facet_axis) == ("pos", "layer", "")
    assert hm.row_labels == list(res.axes[1].labels) and hm.row_keys == list(range(7))
    assert hm.col_labels == ["0", "1"] and hm.col_keys == [0, 1]
    assert hm.stops == [list(s) for s in PALETTE]
    assert hm.scale == pytest.approx(list(scale(res)))
    assert hm.metric == res.metric == "logit_diff(' Paris', ' Rome')"
    assert hm.meaning == f"{res.metric} with block_output patched at this cell"


def test_heads_and_facets(tiny):
    model, tok = tiny
    heads = nv.run(HEADS, model=model, tokenizer=tok)
    hm = Heatmap(heads)
    assert (hm.row_axis, hm.col_axis) == ("layer", "head")
    assert hm.values["shape"] == [1, 2, len(heads.axes[1].labels)]
    three = nv.Result(
        torch.arange(24.0).reshape(2, 3, 4),
        (
            nv.results.Axis("panel", ("block", "mlp")),
            nv.results.Axis("layer", (0, 1, 2)),
            nv.results.Axis("pos", ("a", " b", "c", "d"), (0, 1, 2, 3)),
        ),
        heads.spec,
        "p",
    )
    hm3 = Heatmap(three)
    assert hm3.facet_axis == "panel" and hm3.facets == ["block", "mlp"]
    grid = decode(hm3.values)
    assert grid.shape == (2, 4, 3) and grid[1, 2, 0] == three.values[1, 0, 2]
    assert hm3._layout.index(1, 2, 0) == (1, 0, 2)


def test_click_reruns_the_cell_in_the_kernel_and_agrees_with_the_sweep(res, tiny):
    hm = Heatmap(res)
    seen = []
    hm.observe(lambda ch: seen.append(ch["new"].get("status")), "detail")
    hm.selected = {"facet": 0, "row": 4, "col": 0}  # " Tower" at layer 0
    assert seen == ["computing", "ready"]
    d = hm.detail
    # a full forward pass of that one cell gives the value the batched sweep put there
    assert d["patched"]["metric"] == pytest.approx(float(res.values[0, 4]), abs=1e-5)
    assert d["clean"]["metric"] == pytest.approx(float(res.clean))
    assert d["corrupted"]["metric"] == pytest.approx(float(res.corrupted))
    # top-k from the model's own logits on the patched input (hand-made: hook the block)
    model, tok = tiny
    top = d["patched"]["top"]
    assert len(top) == 5 and all(a["p"] >= b["p"] for a, b in itertools.pairwise(top))
    src = tok("The Colosseum is in", return_tensors="pt").input_ids
    base = tok("The Eiffel Tower is in", return_tensors="pt").input_ids

    block, kept = model.transformer.h[0], {}

    def take(module, inputs, out):  # block 0's output at position 4 of the source run
        kept["h"] = (out[0] if isinstance(out, tuple) else out)[:, 4].clone()

    def put(module, inputs, out):  # ... written into the base run
        h = (out[0] if isinstance(out, tuple) else out).clone()
        h[:, 4] = kept["h"]
        return (h, *out[1:]) if isinstance(out, tuple) else h

    with torch.no_grad():
        for hook, ids in ((take, src), (put, base)):
            handle = block.register_forward_hook(hook)
            try:
                logits = model(ids).logits
            finally:
                handle.remove()
    probs = logits[0, -1].softmax(-1)
    want = probs.topk(5)
    assert [t["id"] for t in top] == want.indices.tolist()
    assert [t["p"] for t in top] == pytest.approx(want.values.tolist(), abs=1e-5)
    assert top[0]["token"] == tok.decode([want.indices[0]])
    # and the baselines' top tokens are those of the plain base and source runs
    with torch.no_grad():
        for run, ids in (("corrupted", base), ("clean", src)):
            plain = model(ids).logits[0, -1].softmax(-1).topk(5)
            assert [t["id"] for t in d[run]["top"]] == plain.indices.tolist()


def test_click_on_a_result_without_plan_says_so(res):
    bare = nv.Result(res.values, res.axes, res.spec, res.metric, res.clean, res.corrupted)
    hm = Heatmap(bare)
    hm.selected = {"facet": 0, "row": 0, "col": 0}
    assert hm.detail["status"] == "error" and "keeps no plan" in hm.detail["error"]


def test_token_view_picks_a_layer(res):
    tv = TokenView(res, layer=1)
    assert tv.title == "layer 1" and tv.tokens == list(res.axes[1].labels)
    assert np.allclose(decode(tv.values), res.values[1].numpy())
    assert tv.scale == pytest.approx(list(scale(res)))  # the heatmap's scale, not the slice's
    with pytest.raises(ValueError, match="layer=…"):
        TokenView(res)
    with pytest.raises(ValueError, match="not one of"):
        TokenView(res, layer=9)


def test_view_picks_the_widget(res):
    assert isinstance(view(res), Heatmap) and view(res) is view(res)
    only_pos = nv.Result(res.values[1], (res.axes[1],), res.spec, res.metric)
    assert isinstance(view(only_pos), TokenView)
    collected = nv.Result(torch.zeros(2, 8), (res.axes[0],), res.spec, None)
    assert view(collected) is None


def test_progress_with_two_arguments_still_works_and_three_get_partial_results(tiny):
    model, tok = tiny
    two, three = [], []
    nv.run(PATCH, model=model, tokenizer=tok, max_batch=4, progress=lambda d, t: two.append(d))
    res = nv.run(
        PATCH,
        model=model,
        tokenizer=tok,
        max_batch=4,
        progress=lambda d, t, partial: three.append((d, partial.values.clone())),
    )
    done = [d for d, _ in three]
    assert two == done and len(done) >= 2 and done == sorted(set(done)) and done[-1] == 14
    missing = [int(v.isnan().sum()) for _, v in three]
    assert missing == [14 - d for d in done]
    assert torch.equal(three[-1][1], res.values)
    done = ~three[1][1].isnan()
    assert torch.equal(three[1][1][done], res.values[done])  # filled cells are final values


class Shown:
    """What IPython.display.display returns with display_id=True: a handle to update."""

    def __init__(self, shown, widget):
        shown.append(widget)
        self.updates = []

    def update(self, obj):
        self.updates.append(obj)


def test_live_sweep_draws_each_chunk_and_stop_keeps_the_partial_result(tiny, monkeypatch):
    import IPython.display

    model, tok = tiny
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda w, **kw: Shown(shown, w))
    res = nv.run(PATCH, model=model, tokenizer=tok, max_batch=4, live=True)
    (hm,) = shown
    assert view(res) is hm and hm.progress["state"] == "done"
    assert hm.live_display.updates == [res]  # the display ends as the Result's own
    assert np.allclose(decode(hm.values)[0], res.values.T.numpy())

    shown.clear()

    def stop_after_first_chunk(w, **kw):
        w.observe(lambda ch: setattr(w, "stop", True), "progress")  # as if clicked at once
        return Shown(shown, w)

    monkeypatch.setattr(IPython.display, "display", stop_after_first_chunk)
    with pytest.raises(nv.SweepInterrupted) as stop:
        nv.run(PATCH, model=model, tokenizer=tok, max_batch=4, live=True)
    partial = stop.value.result
    assert int(partial.values.isnan().sum()) == 13  # one chunk ran: a live sweep's first, one cell
    assert shown[0].progress == {"state": "stopped", "done": 1, "total": 14}
    assert [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks] == []


def test_live_draws_only_what_a_heatmap_can(tiny, monkeypatch):
    import IPython.display

    model, tok = tiny
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda w, **kw: shown.append(w))
    res = nv.run(
        'base: "a b c"\ncollect: block_output layer=* pos=-1', model=model, tokenizer=tok, live=True
    )
    assert shown == [] and res.values.shape[0] == 2


def test_mimebundle_outside_a_kernel_is_empty_and_on_colab_names_its_widget_manager(
    res, monkeypatch
):
    assert mimebundle(res) == ({}, {})
    calls = []
    colab = types.ModuleType("google.colab.output")
    colab.enable_custom_widget_manager = lambda: calls.append("enabled")
    colab._widgets = types.SimpleNamespace(_installed_url="https://colab.example/manager.js")
    monkeypatch.setitem(sys.modules, "google.colab.output", colab)
    monkeypatch.setattr("nbvene.widgets.display.can_display", lambda: True)
    fresh = nv.Result(res.values, res.axes, res.spec, res.metric, res.clean, res.corrupted)
    data, metadata = mimebundle(fresh)
    view_json = data["application/vnd.jupyter.widget-view+json"]
    assert view_json["model_id"] == view(fresh).model_id and view_json["version_major"] == 2
    assert metadata == {
        "application/vnd.jupyter.widget-view+json": {
            "colab": {"custom_widget_manager": {"url": "https://colab.example/manager.js"}}
        }
    }
    assert calls == ["enabled"]
    assert not math.isnan(view(fresh).scale[0])


def test_click_on_a_causal_trace_panel_reruns_that_panels_cell(tiny):
    model, tok = tiny
    trace = nv.causal_trace(
        "The Eiffel Tower is in",
        subject="The Eiffel",
        target=" Paris",
        model=model,
        tokenizer=tok,
        samples=2,
        window=1,
    )
    hm = Heatmap(trace)
    assert hm.facet_axis == "panel" and hm.facets == ["block", "mlp", "attention"]
    for panel in range(3):
        hm.selected = {"facet": panel, "row": 2, "col": 1}
        assert hm.detail["status"] == "ready", hm.detail
        want = float(trace.values[panel, 1, 2])
        assert hm.detail["patched"]["metric"] == pytest.approx(want, abs=1e-6)
