"""The knob behind the steering panel, in Chromium: moving the slider with the keyboard sends a
request, the kernel side (the real Knob, generating on a tiny Llama) answers it, and the
steered column's text changes while the baseline stays."""

import torch

from nbvene.figures import visible
from nbvene.models import tiny
from nbvene.steer import Knob

SPEC = """\
steer:    block_output layer=1 by {v} * slider(-8, 8, 0)
generate: "The Eiffel Tower is located in" max_new_tokens=6
"""


def shown(page, column: int) -> str:
    col = page.get_by_test_id("panel-column").nth(column)
    return "".join(col.get_by_test_id("panel-token").all_inner_texts())


def answer(panel, page):
    """What the kernel does with the browser's newest request: compute and send the answer."""
    saved = page.evaluate("window.__w.rec.saved")
    panel.set_state({"request": saved[-1]["request"]})
    page.evaluate("a => pySet('answer', a)", panel.answer)


def test_moving_the_slider_changes_the_generated_text(mount, page, artifacts):
    model, tok = tiny("llama", layers=3)
    # the tiny random model's activations are small: a small vector, felt only at high strength
    v = 0.003 * torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    knob = Knob.of(SPEC, model=model, tokenizer=tok, namespace={"v": v})
    panel = knob.panel()
    mount(panel, "panel")
    slider = page.get_by_test_id("panel-slider-0")
    slider.focus()
    page.keyboard.press("ArrowRight")  # 0 → 1 (step (8 − −8) / 16)
    page.wait_for_function("window.__w.rec.saved.length === 1")
    answer(panel, page)
    assert panel.values == [1.0]
    base, first = shown(page, 0), shown(page, 1)
    assert first == base  # too weak at strength 1 to change anything here
    for _ in range(6):
        page.keyboard.press("ArrowRight")  # → 7
    page.wait_for_function("window.__w.rec.saved.length === 2")
    answer(panel, page)
    assert panel.values == [7.0]
    assert shown(page, 0) == base  # the baseline stays
    assert shown(page, 1) != first  # the steered text follows the slider
    assert page.get_by_test_id("panel-column").nth(1).locator(".nv-mark").count() > 0
    want = knob.generation([7.0]).tokens[1]
    # prose: spaces stay spaces; only a token of nothing but whitespace gets visible signs
    assert shown(page, 1) == "".join(t if t.strip() else visible(t) for t in want)
    page.locator(".harness-widget").screenshot(path=artifacts / "harness_steering_knob.png")
    assert page.errors == []
