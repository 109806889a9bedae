"""Named sources in the spec language: `source s1: ...`, `from s1`, `into s2`; printing back,
JSON, and errors with a caret under the bad token."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbvene import NbveneError, parse
from nbvene.spec import Batch, Source, Text, Var, format_spec, from_json, to_json

PATH = """
base:   {base}
source corrupt: {source}       # where the senders' values come from
source path: {base}
patch:  z layer=0 head=[1, 3] pos=* from corrupt into path
zero:   z layer=1 head=0 into path
patch:  q layer=1 head=2 from path
metric: logit_diff(" Mary", " John")
"""


def test_named_sources_and_from_into():
    spec = parse(PATH)
    assert spec.source is None
    assert spec.sources == (Source("corrupt", Var("source")), Source("path", Var("base")))
    assert [s.line for s in spec.sources] == [3, 4]
    senders, frozen, receivers = spec.interventions
    assert (senders.source, senders.into) == ("corrupt", "path")
    assert (frozen.source, frozen.into) == (None, "path")
    assert (receivers.source, receivers.into) == ("path", None)


def test_single_source_specs_parse_as_before():
    spec = parse('base: "a"\nsource: ["b", {c}]\npatch: block_output layer=* pos=-1')
    assert spec.sources == () and spec.source == Batch((Text("b"), Var("c")))
    assert spec.interventions[0].source is None and spec.interventions[0].into is None
    assert "from" not in format_spec(spec) and "into" not in format_spec(spec)


def test_text_and_json_round_trip():
    spec = parse(PATH)
    assert parse(format_spec(spec)) == spec
    assert from_json(to_json(spec)) == spec
    rows = format_spec(spec).splitlines()
    assert rows[1:3] == ["source corrupt: {source}", "source path: {base}"]
    assert rows[3] == "patch: z layer=0 head=[1, 3] pos=* from corrupt into path"
    both = parse('base: "a"\nsource: "b"\nsource s: "c"\npatch: x.output via {f} from s')
    assert parse(format_spec(both)) == both and from_json(to_json(both)) == both


@pytest.mark.parametrize(
    ("text", "message", "column", "hint"),
    [
        ('source base: "x"', "'base' cannot name a source", 7, "source s1"),
        ('source s: "x"\nsource s: "y"', "a second source named 's'", 7, "line 1"),
        ("source s: x", "expected a prompt", 10, None),
        ("patch: z layer=1 from", "expected a source name after 'from'", 21, "source s1"),
        ("patch: z layer=1 from 3", "expected a source name after 'from'", 22, None),
        ("zero: z layer=1 from s", "zero: takes no 'from'", 16, "'into' with any verb"),
        ("collect: z layer=1 into s", "collect: takes no 'into'", 19, None),
        ("patch: z from a from b", "from given twice", 16, None),
        ("add: z by {v} from s", "by and from together", 0, None),
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
    assert str(e).splitlines()[2] == "    " + " " * column + "^"


_WORDS = ["base:", "source:", "source s1:", "source s2:", "patch:", "zero:", "add:", "metric:"]
_PIECES = [
    "z",
    "layer=",
    "pos=",
    "head=",
    "*",
    "1",
    "-1",
    "from",
    "into",
    "s1",
    "s2",
    "{",
    "}",
    '"x"',
    "by",
    "via",
    "source",
    ":",
    "=",
    "#",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_WORDS), st.lists(st.sampled_from(_PIECES), max_size=8)),
        max_size=5,
    )
)
def test_fuzzed_multisource_specs_raise_only_nbvene_errors(lines):
    text = "\n".join(word + " " + " ".join(pieces) for word, pieces in lines)
    try:
        spec = parse(text)
    except NbveneError:
        return
    assert parse(format_spec(spec)) == spec
    assert from_json(to_json(spec)) == spec
