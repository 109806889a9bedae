"""The steering panel: Python side (request ids, skipping, errors) and its front end in Chromium
with a fake model (sliders, debouncing, keyboard, stale answers, escaping)."""

import pytest

from nbvene import NbveneError
from nbvene.widgets import SteeringPanel

SLIDER = {
    "label": "kind−cruel · block_output L12",
    "min": -4.0,
    "max": 4.0,
    "step": 0.5,
    "value": 1.0,
}


def columns(values):
    return {
        "columns": [
            {"title": "baseline", "tokens": [{"text": " kind", "mark": False}]},
            {"title": f"steered ×{values[0]:g}", "tokens": [{"text": " cruel", "mark": True}]},
        ],
        "note": f"strength {values[0]:g}",
    }


def test_request_calls_callback_and_answers_with_its_id():
    seen = []
    panel = SteeringPanel([SLIDER], callback=lambda v: seen.append(v) or columns(v), title="t")
    assert panel.values == [1.0]
    panel.request = {"id": 1, "values": [2.5]}
    assert seen == [[2.5]]
    assert panel.answer["id"] == 1 and panel.answer["values"] == [2.5]
    assert panel.answer["note"] == "strength 2.5"
    assert panel.values == [2.5]


def test_older_request_is_not_computed():
    seen = []
    panel = SteeringPanel([SLIDER], callback=lambda v: seen.append(v) or {})
    panel.request = {"id": 3, "values": [1.0]}
    panel.request = {"id": 2, "values": [-1.0]}  # arrives late: skipped
    assert seen == [[1.0]] and panel.answer["id"] == 3


def test_answer_of_a_request_overtaken_while_computing_is_dropped():
    panel = None

    def slow(values):
        if values == [1.0]:  # a newer request arrives while this one computes
            panel.request = {"id": 2, "values": [3.0]}
        return {"note": f"for {values[0]}"}

    panel = SteeringPanel([SLIDER], callback=slow)
    answers = []
    panel.observe(lambda ch: answers.append(ch["new"]["id"]), "answer")
    panel.request = {"id": 1, "values": [1.0]}
    assert answers == [2] and panel.answer["note"] == "for 3.0"


def test_callback_error_becomes_the_answer():
    panel = SteeringPanel([SLIDER], callback=lambda v: 1 / 0)
    panel.request = {"id": 1, "values": [0.0]}
    assert panel.answer == {"id": 1, "error": "ZeroDivisionError: division by zero"}


@pytest.mark.parametrize(
    "bad",
    [
        {"label": "x"},
        {"label": "x", "min": 1, "max": 0},
        {**SLIDER, "value": 9.0},
        {**SLIDER, "colour": "red"},
    ],
)
def test_bad_sliders_are_named(bad):
    with pytest.raises(NbveneError, match="slider 0"):
        SteeringPanel([bad], callback=lambda v: {})


# --- front end (Chromium, fake model) --------------------------------------------------------


def test_keyboard_moves_slider_and_requests_are_debounced(mount, page, artifacts):
    panel = SteeringPanel(
        [SLIDER, {**SLIDER, "label": "second", "value": 0.0}],
        callback=columns,
        title="I think that you are",
    )
    mount(panel, "panel")
    assert page.get_by_test_id("panel").locator("h4").inner_text() == "I think that you are"
    assert page.locator(".nv-label").all_inner_texts() == [SLIDER["label"], "second"]
    slider = page.get_by_test_id("panel-slider-0")
    assert slider.get_attribute("data-lm-suppress-shortcuts") == "true"
    slider.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert page.get_by_test_id("panel-value-0").inner_text() == "2.5"
    assert page.evaluate("window.__w.rec.saved") == []  # debounced: nothing sent yet
    page.wait_for_function("window.__w.rec.saved.length === 1")
    page.wait_for_timeout(300)
    saved = page.evaluate("window.__w.rec.saved")
    assert len(saved) == 1, "three key presses within the debounce make one request"
    assert saved[0]["request"] == {"id": 1, "values": [2.5, 0.0]}
    assert saved[0]["values"] == [2.5, 0.0]
    assert page.get_by_test_id("panel-status").inner_text() == "computing…"
    # the kernel's answer, computed by the real Python widget from the request
    panel.set_state({"request": saved[0]["request"]})
    page.evaluate("a => pySet('answer', a)", panel.answer)
    assert page.get_by_test_id("panel-status").inner_text() == ""
    cols = page.get_by_test_id("panel-column")
    assert cols.count() == 2
    assert cols.nth(1).locator("h5").inner_text() == "steered ×2.5"
    assert cols.nth(0).get_by_test_id("panel-token").inner_text() == " kind"  # prose
    assert cols.nth(1).locator(".nv-mark").count() == 1
    assert page.get_by_test_id("panel-note").inner_text() == "strength 2.5"
    page.locator(".harness-widget").screenshot(path=artifacts / "harness_panel.png")
    assert page.errors == []


def test_busy_kernel_gets_one_request_at_a_time_and_stale_answers_are_not_shown(mount, page):
    panel = SteeringPanel([SLIDER], callback=columns)
    mount(panel, "panel")
    slider = page.get_by_test_id("panel-slider-0")
    slider.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("window.__w.rec.saved.length === 1")
    # while request 1 is unanswered, more moves are held back, not sent
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(400)
    assert len(page.evaluate("window.__w.rec.saved")) == 1
    # the answer to 1 arrives: the newest held-back values go at once, as request 2
    page.evaluate("pySet('answer', {id: 1, values: [1.5], note: 'one', columns: []})")
    saved = page.evaluate("window.__w.rec.saved")
    assert [s["request"] for s in saved] == [
        {"id": 1, "values": [1.5]},
        {"id": 2, "values": [2.5]},
    ]
    assert page.get_by_test_id("panel-status").inner_text() == "computing…"
    page.evaluate("pySet('answer', {id: 1, values: [1.5], note: 'stale', columns: []})")
    assert page.get_by_test_id("panel-note").inner_text() == "one"
    page.evaluate("pySet('answer', {id: 2, values: [2.5], note: 'two', columns: []})")
    assert page.get_by_test_id("panel-note").inner_text() == "two"


def test_token_text_is_escaped_and_errors_shown(mount, page):
    panel = SteeringPanel([SLIDER], callback=columns)
    mount(panel, "panel")
    page.get_by_test_id("panel-slider-0").fill("2")
    page.wait_for_function("window.__w.rec.saved.length === 1")
    evil = [
        {"text": "<script>window.pwned=1</script>", "mark": False},
        {"text": "<img src=x onerror=window.pwned=2>", "mark": True},
    ]
    page.evaluate("t => pySet('answer', {id: 1, columns: [{title: '<b>t</b>', tokens: t}]})", evil)
    col = page.get_by_test_id("panel-column")
    assert col.locator("script, img, b").count() == 0
    assert col.locator("h5").inner_text() == "<b>t</b>"
    shown = col.get_by_test_id("panel-token").nth(1).inner_text()
    assert shown == "<img src=x onerror=window.pwned=2>"  # prose: spaces stay spaces
    assert page.evaluate("window.pwned") is None
    page.evaluate("pySet('answer', {id: 1, error: 'RuntimeError: boom'})")
    assert page.get_by_test_id("panel-status").inner_text() == "error: RuntimeError: boom"
