"""Results (and the steering knob) hold their model weakly: after `del model`, the model's
memory is freed while the figures and values stay; re-running a cell then says the model is
gone, while a click a sweep kept the answer for (`Result.top`) still answers."""

import gc
import weakref
from dataclasses import replace

import pytest
import torch

import nbvene as nv
from nbvene.steer import Knob
from nbvene.widgets import Heatmap
from nbvene.widgets.heatmap import cell_detail

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"
SWEEP = (
    f'base: "{BASE}"\nsource: "{SOURCE}"\npatch: block_output layer=* pos=*\nmetric: p(" Paris")'
)
STEER = (
    'steer: block_output layer=1 by {v} * slider(-4, 4, 1)\ngenerate: "I think" max_new_tokens=3'
)


def made_and_dropped():
    """Everything a notebook keeps from one model (as in its Out cache), then `del model`."""
    model, tok = nv.models.tiny("llama")
    v = nv.vector("You are kind.", "You are cruel.", model=model, tokenizer=tok, layer=1)
    kept = {
        "sweep": nv.run(SWEEP, model=model, tokenizer=tok),
        "trace": nv.causal_trace(
            SOURCE, "The Eiffel Tower", " Paris", model=model, tokenizer=tok, samples=2
        ),
        "vector": v,
        "generation": nv.generate(
            STEER.replace("slider(-4, 4, 1)", "2"), model=model, tokenizer=tok, namespace={"v": v}
        ),
        "measured": nv.run(
            f'base: "{BASE}"\nsteer: block_output layer=1 by {{v}} * 2\nmetric: p(" Paris")',
            model=model,
            tokenizer=tok,
            namespace={"v": v},
        ),
        "knob": Knob.of(STEER, model=model, tokenizer=tok, namespace={"v": v}),
    }
    kept["detail"] = cell_detail(kept["sweep"], (0, 0))  # a click while the model lives
    kept["heatmap"] = Heatmap(kept["sweep"])
    kept["shown"] = kept["knob"]([1.0])
    refs = [weakref.ref(model), *(weakref.ref(p) for p in model.parameters())]
    del model, v
    gc.collect()
    return kept, refs


@pytest.fixture(scope="module")
def dropped():
    return made_and_dropped()


def test_the_model_and_its_weights_are_freed(dropped):
    _, refs = dropped
    assert [r() for r in refs] == [None] * len(refs)


def test_results_still_show_their_figures_and_values(dropped):
    kept, _ = dropped
    for name in ("sweep", "trace", "measured"):
        res = kept[name]
        assert torch.isfinite(res.values).all()
        assert repr(res).startswith("Result(p(' Paris')")
        assert res.to_svg().startswith("<svg")
    assert len(kept["sweep"].to_pandas()) == 2 * 11
    assert kept["vector"].values.shape == (64,)
    assert "Generation from 'I think'" in repr(kept["generation"])
    assert kept["knob"]([1.0]) == kept["shown"]  # already made: from the knob's cache


def test_a_click_answers_from_the_kept_top_tokens_after_the_model_is_deleted(dropped):
    kept, _ = dropped
    for res, cell in ((kept["sweep"], (0, 0)), (kept["trace"], (1, 0, 0))):
        answer = cell_detail(res, cell)
        assert answer["patched"]["metric"] == pytest.approx(float(res.values[cell]))
        assert len(answer["patched"]["top"]) == 5
        assert len(answer["corrupted"]["top"]) == 5 and len(answer["clean"]["top"]) == 5
    # the click made while the model lived re-ran nothing: the same tokens
    assert cell_detail(kept["sweep"], (0, 0))["patched"]["top"] == kept["detail"]["patched"]["top"]


def test_rerunning_a_cell_says_the_model_was_deleted(dropped):
    kept, _ = dropped
    for res, cell in ((kept["sweep"], (0, 0)), (kept["trace"], (1, 0, 0))):
        with pytest.raises(nv.NbveneError, match="has been deleted") as e:
            cell_detail(replace(res, top=None), cell)  # no kept tokens: a re-run needs the model
        assert "re-run the cell" in e.value.hint
    heatmap = kept["heatmap"]
    heatmap.show(replace(kept["sweep"], top=None))
    heatmap.selected = {"facet": 0, "row": 0, "col": 0}
    assert heatmap.detail["status"] == "error"
    assert "has been deleted" in heatmap.detail["error"]
    with pytest.raises(nv.NbveneError, match="knob steers has been deleted"):
        kept["knob"]([2.0])


def test_a_rerun_while_the_model_lives_is_the_sweeps_own_cell():
    model, tok = nv.models.tiny("llama")
    res = nv.run(SWEEP, model=model, tokenizer=tok)
    detail = cell_detail(res, (1, 3))
    assert detail["patched"]["metric"] == pytest.approx(float(res.values[1, 3]), abs=1e-6)
    assert repr(res.rerun) == "Rerun(1 plan(s), model alive)"
