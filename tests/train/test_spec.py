"""The spec's training forms: `label: {labels}` and `via name(key=value, ...)`."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbvene import NbveneError
from nbvene.spec import Call, Var, format_spec, from_json, parse, to_json

SPEC = """
base:   {base}
source: {source}
patch:  hidden.output via rotated(k=1)     # a comment
add:    block_output layer=2 pos=-1 via interchange(dims=[0, 3], subspace={basis})
zero:   mlp_output layer=0 via boundless(init=0.25, t_end=0.005, name="x")
label:  {label}
"""


def test_label_and_calls():
    spec = parse(SPEC)
    assert spec.label == Var("label") and spec.lines["label"] == 7
    rotated, fixed, boundless = (i.via for i in spec.interventions)
    assert rotated == Call("rotated", (("k", 1),))
    assert fixed == Call("interchange", (("dims", (0, 3)), ("subspace", Var("basis"))))
    assert boundless == Call("boundless", (("init", 0.25), ("t_end", 0.005), ("name", "x")))
    assert parse("patch: x.output via f()").interventions[0].via == Call("f")


def test_text_and_json_round_trip():
    spec = parse(SPEC)
    text = format_spec(spec)
    assert "patch: hidden.output via rotated(k=1)" in text.splitlines()
    assert text.splitlines()[-1] == "label: {label}"
    assert parse(text) == spec
    assert from_json(to_json(spec)) == spec
    tiny = parse("patch: x.output via f(a=0.00001, b=-2.5, c=100.0)")
    assert "a=0.00001" in format_spec(tiny) and parse(format_spec(tiny)) == tiny


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("label: 3", "expected {labels} after 'label:'", 7),
        ("label: {a}\nlabel: {b}", "a second 'label' statement", 0),
        ("patch: x.output via rotated", "expected {f} or an intervention", 20),
        ("patch: x.output via rotated(k)", "expected '='", 29),
        ("patch: x.output via rotated(k=1, k=2)", "k given twice", 33),
        ("patch: x.output via rotated(k=*)", "expected a value", 30),
        ("patch: x.output via rotated(k=1", "expected ',' or ')', found end of line", 31),
        ("patch: x.output via rotated(", "expected 'key=value', found end of line", 28),
        ("collect: x.output via rotated(k=1)", "collect: takes no 'via'", 18),
    ],
)
def test_errors_point_at_the_bad_token(text, message, column):
    with pytest.raises(NbveneError) as info:
        parse(text)
    assert message in info.value.message
    assert info.value.column == column


_WORDS = ["base:", "patch:", "label:", "add:"]
_PIECES = [
    "x.output",
    "via",
    "rotated",
    "(",
    ")",
    "k",
    "=",
    "1",
    "0.5",
    "-2",
    ",",
    "[",
    "]",
    "{",
    "}",
    '"s"',
    "label",
    "dims",
    "layer=",
    "*",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_WORDS), st.lists(st.sampled_from(_PIECES), max_size=10)),
        max_size=4,
    )
)
def test_fuzzed_specs_raise_only_nbvene_errors(lines):
    text = "\n".join(word + " " + " ".join(pieces) for word, pieces in lines)
    with contextlib.suppress(NbveneError):
        spec = parse(text)
        assert parse(format_spec(spec)) == spec
        assert from_json(to_json(spec)) == spec
