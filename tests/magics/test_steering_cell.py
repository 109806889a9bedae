"""`%%intervene` on steering specs: generate: shows baseline and steered text side by side,
a slider gives the steering panel (or, without widgets, the text at the slider's start), a
metric-only steering spec returns nv.run's Result."""

from __future__ import annotations

import pytest
import torch

import nbvene as nv

GENERATE = """\
steer:    block_output layer=1 by {v} * 6
generate: "The Eiffel Tower is located in" max_new_tokens=6
"""


@pytest.fixture
def v(shell):
    shell.user_ns["v"] = torch.randn(64, generator=torch.Generator().manual_seed(0))
    return shell.user_ns["v"]


def test_generate_cell_shows_the_side_by_side_text(shell, cell, v):
    ran = cell("%%intervene model\n" + GENERATE)
    assert ran.error is None, ran.err
    gen = ran.value
    same = nv.generate(
        GENERATE, model=shell.user_ns["model"], tokenizer=shell.user_ns["tok"], namespace={"v": v}
    )
    assert isinstance(gen, nv.Generation) and gen.ids == same.ids
    assert "Generation from 'The Eiffel Tower is located in'" in ran.out
    assert "steered ×6" in ran.out
    assert gen.meta["cell"].startswith("%%intervene model\n")


def test_generate_cell_out_and_show_code(shell, cell, v):
    ran = cell("%%intervene model -o gen --show-code\n" + GENERATE)
    assert ran.error is None, ran.err
    assert "gen = nv.generate(" in ran.out and "namespace={'v': v}" in ran.out
    assert isinstance(shell.user_ns["gen"], nv.Generation)


def test_slider_cell_without_widgets_shows_the_start_values(shell, cell, v):
    ran = cell("%%intervene model\n" + GENERATE.replace("* 6", "* slider(-8, 8, 6)"))
    assert ran.error is None, ran.err
    assert "no widgets here" in ran.err  # a terminal shell: no widget can show
    assert ran.value.strengths == [(0.0,), (6.0,)]
    fixed = cell("%%intervene model\n" + GENERATE).value
    assert ran.value.ids == fixed.ids


def test_slider_cell_shows_the_panel_with_the_knob(shell, cell, v, monkeypatch):
    import nbvene.magics.magic as magic
    from nbvene.widgets import SteeringPanel

    monkeypatch.setattr(magic, "can_display", lambda: True)  # as in a Jupyter kernel
    ran = cell("%%intervene model\n" + GENERATE.replace("* 6", "* slider(-8, 8, 6)"))
    assert ran.error is None, ran.err
    panel = ran.value
    assert isinstance(panel, SteeringPanel) and panel.values == [6.0]
    assert panel.sliders[0]["label"] == "v · block_output L1"
    panel.set_state({"request": {"id": 1, "values": [6.0]}})  # what the browser sends
    assert [c["title"] for c in panel.answer["columns"]] == ["baseline", "steered ×6"]
    fixed = cell("%%intervene model\n" + GENERATE).value
    assert [t["text"] for t in panel.answer["columns"][1]["tokens"]] == fixed.tokens[1]


def test_metric_steering_cell_is_nv_run(shell, cell, v):
    spec = (
        'base: "The Eiffel Tower is located in"\n'
        "steer: block_output layer=1 by {v} * 0..4 step 2\n"
        'metric: p(" Paris")\n'
    )
    res = cell("%%intervene model\n" + spec).value
    assert isinstance(res, nv.Result) and res.axes == ("strength",)
    want = nv.run(
        spec, model=shell.user_ns["model"], tokenizer=shell.user_ns["tok"], namespace={"v": v}
    )
    torch.testing.assert_close(res.values, want.values)


def test_steering_spec_errors_are_short(shell, cell, v):
    ran = cell('%%intervene model\nsteer: block_output layer=9 by {v}\ngenerate: "x"\n')
    assert ran.error is not None
    assert "layer 9 is out of range" in str(ran.error)


def test_an_interrupted_generate_cell_keeps_the_text_so_far(shell, cell, v):
    model = shell.user_ns["model"]
    calls = []

    def stop_at_third_step(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    handle = model.get_output_embeddings().register_forward_pre_hook(stop_at_third_step)
    try:
        ran = cell("%%intervene model -o gen\n" + GENERATE)
    finally:
        handle.remove()
    assert ran.error is None, ran.err
    assert "interrupted: the text generated so far; stored as gen" in ran.err
    gen = shell.user_ns["gen"]
    assert [len(ids) for ids in gen.ids] == [2, 2] and gen.stopped == ["interrupted"] * 2
