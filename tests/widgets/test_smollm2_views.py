"""The widgets on the real model (SmolLM2-135M): activation patching from the Eiffel Tower into
the Colosseum, drawn by the heatmap in Chromium; a click re-runs one cell and shows the answers
the model gives. The screenshots are the ones docs/images/ holds."""

import pytest

import nbvene as nv
from nbvene.widgets import Heatmap, TokenView

pytestmark = pytest.mark.smollm2

SPEC = """
base:   "The Colosseum is located in the city of"
source: "The Eiffel Tower is located in the city of"
patch:  block_output layer=* pos=*
metric: logit_diff(" Paris", " Rome")
"""


@pytest.fixture(scope="module")
def res():
    model, tok = nv.models.load()
    return nv.run(SPEC, model=model, tokenizer=tok)


def test_patching_heatmap_and_click_on_smollm2(mount, page, res, artifacts):
    hm = Heatmap(res)
    mount(hm, "heatmap")
    last = res.axes[1].positions[-1]
    cell = page.locator(f'[data-testid=heatmap-cell][data-layer="25"][data-pos="{last}"]')
    cell.click()
    selected = page.evaluate("window.__w.rec.saved")[-1]["selected"]
    hm.set_state({"selected": selected})  # the kernel's side of the click
    page.evaluate("d => pySet('detail', d)", hm.detail)
    d = hm.detail
    # base: the Colosseum (Rome); source: the Eiffel Tower (Paris)
    assert d["corrupted"]["top"][0]["token"] == " Rome"
    assert d["clean"]["top"][0]["token"] == " Paris"
    # patched late at the last token, the run answers like the source
    assert d["patched"]["top"][0]["token"] == " Paris"
    assert d["patched"]["metric"] == pytest.approx(float(res.values[25, -1]), abs=1e-3)
    page.locator(".harness-widget").screenshot(path=artifacts / "smollm2_heatmap_click.png")


def test_token_view_on_smollm2(mount, page, res, artifacts):
    mount(TokenView(res, layer=8), "tokens")
    assert page.get_by_test_id("token").count() == len(res.axes[1].labels)
    page.locator(".harness-widget").screenshot(path=artifacts / "smollm2_tokens.png")
