"""The spec language: parsing, printing back, JSON, and errors that point at the bad token."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbvene import NbveneError
from nbvene.spec import (
    All,
    Index,
    Items,
    Last,
    Mapped,
    Metric,
    SelectorVar,
    Span,
    Text,
    TokenText,
    Var,
    format_spec,
    from_json,
    parse,
    to_json,
)

TRACE = """
# ROME-style causal tracing
base:    "The Eiffel Tower is located in the city of"
corrupt: noise 3σ on "The Eiffel Tower" samples=10 seed=7
restore: mlp_output layer=* pos=* window=10   # a comment "with quotes"
metric:  p(" Paris") normalized
"""


def test_causal_trace_spec():
    spec = parse(TRACE)
    assert spec.base == Text("The Eiffel Tower is located in the city of")
    c = spec.corrupt
    assert (c.scale, c.relative, c.subject, c.samples, c.seed) == (
        3.0,
        True,
        Text("The Eiffel Tower"),
        10,
        7,
    )
    (restore,) = spec.interventions
    assert restore.verb == "restore" and restore.component == "mlp_output"
    assert restore.where == (("layer", All()), ("pos", All()))
    assert restore.window == 10
    assert spec.metric == Metric("p", (" Paris",), normalized=True)
    assert spec.lines == {"base": 3, "corrupt": 4, "restore": 5, "metric": 6}


@pytest.mark.parametrize(
    ("written", "selector"),
    [
        ("3", Index(3)),
        ("-1", Index(-1)),
        ("2..5", Span(2, 5)),
        ("-3..-1", Span(-3, -1)),
        ("[1, 4, 7]", Items((1, 4, 7))),
        ("*", All()),
        ('"Tower"', TokenText("Tower")),
        ("last", Last()),
        ("{locs}", SelectorVar("locs")),
        ("-1->-2", Mapped(Index(-1), Index(-2))),
        ('"Tower"->last', Mapped(TokenText("Tower"), Last())),
    ],
)
def test_position_selectors(written, selector):
    spec = parse(f'base: "x"\npatch: block_output layer=0 pos={written}')
    assert spec.interventions[0].selector("pos") == selector


def test_prompts_vectors_and_callables():
    spec = parse(
        'base: ["a", {more}]\nsource: {src}\n'
        "add: block_output layer=3 by {v} * -2.5\n"
        "patch: model.layers[3].mlp.down_proj.output via {f}\n"
        "mean: head_attention_value_output layer=1 head=2 over={ref}\n"
        'metric: logit_diff(" a", " b")'
    )
    assert spec.base.items == (Text("a"), Var("more"))
    assert spec.source == Var("src")
    add, patch, mean = spec.interventions
    assert (add.by.vector, add.by.scale) == (Var("v"), -2.5)
    assert patch.component == "model.layers[3].mlp.down_proj.output" and patch.via == Var("f")
    assert mean.over == Var("ref")


def test_text_and_json_round_trip():
    spec = parse(TRACE)
    assert parse(format_spec(spec)) == spec
    assert from_json(to_json(spec)) == spec
    assert format_spec(spec).splitlines()[2] == "restore: mlp_output layer=* pos=* window=10"


def test_escaped_quotes_and_hash_inside_strings():
    spec = parse('base: "say \\"hi\\" # not a comment"  # a comment')
    assert spec.base == Text('say "hi" # not a comment')
    assert parse(format_spec(spec)) == spec


@pytest.mark.parametrize(
    ("text", "message", "column", "hint"),
    [
        ('bsae: "x"', "unknown statement 'bsae'", 0, "did you mean 'base'?"),
        ('base "x"', "expected a statement", 0, "keyword: value"),
        ("patch: block_output lyer=3", "unknown key 'lyer'", 20, "did you mean 'layer'?"),
        ("patch: block_output layer=x", "bad value 'x' for layer=", 26, "a..b"),
        ("metric: logitdiff", "unknown metric 'logitdiff'", 8, "logit_diff"),
        ('metric: p(" a", " b")', "p takes 1 token, got 2", 8, 'p(" Paris")'),
        ('base: "abc', "unterminated string", 6, None),
        ("patch: block_output pos=1..", "expected the end of the range", 27, None),
        ('corrupt: noise 3σ in "x"', "expected 'on'", 18, None),
        ("patch:", "patch: needs a component", 6, "block_output"),
        ("patch: x layer=1->2", "pos= only", 16, None),
        ('base: "a"\nbase: "b"', "a second 'base' statement", 0, "line 1"),
    ],
)
def test_errors_point_at_the_bad_token(text, message, column, hint):
    with pytest.raises(NbveneError) as info:
        parse(text)
    e = info.value
    assert message in e.message
    assert e.line == text.count("\n") + 1
    assert e.column == column
    if hint:
        assert hint in e.hint
    rendered = str(e).splitlines()
    assert rendered[0].startswith(f"line {e.line}: ")
    assert rendered[2] == "    " + " " * column + "^"


_WORDS = ["base:", "source:", "patch:", "restore:", "metric:", "corrupt:", "collect:", "add:"]
_PIECES = [
    "block_output",
    "layer=",
    "pos=",
    "head=",
    "*",
    "..",
    "->",
    "[",
    "]",
    ",",
    "{",
    "}",
    "(",
    ")",
    '"',
    '"x"',
    "3",
    "-1",
    "σ",
    "noise",
    "on",
    "by",
    "via",
    "p",
    "logit_diff",
    "kl",
    "normalized",
    "#",
    "\\",
    "=",
    ":",
    "window=",
    "last",
    "über",
    "\t",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_WORDS), st.lists(st.sampled_from(_PIECES), max_size=8)),
        max_size=5,
    )
)
def test_fuzzed_specs_raise_only_nbvene_errors(lines):
    text = "\n".join(word + " " + " ".join(pieces) for word, pieces in lines)
    try:
        spec = parse(text)
    except NbveneError:
        return
    assert parse(format_spec(spec)) == spec


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_random_text_raises_only_nbvene_errors(text):
    with contextlib.suppress(NbveneError):  # any other exception fails the test
        parse(text)


def test_a_spec_prints_as_written():
    assert str(parse(TRACE)) == TRACE.strip()
    assert str(parse(format_spec(parse(TRACE)))) == format_spec(parse(TRACE))
