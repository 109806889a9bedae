"""The statement table: every statement's help example parses and writes back as it parses,
and the parser, formatter, help and completion all follow the table."""

import pytest

import nbvene as nv
from nbvene.spec import KEYWORDS, STATEMENTS, format_spec
from nbvene.spec.ast import VERBS


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_each_example_parses_and_round_trips(keyword):
    statement = STATEMENTS[keyword]
    for example in statement.example.splitlines():
        spec = nv.parse(example)
        assert spec.lines == {keyword: 1}
        assert nv.parse(format_spec(spec)) == spec
    assert statement.help() and statement.allowed <= {
        "patching",
        "steering",
        "training",
        "discovery",
    }


def test_the_verbs_are_the_statements_that_edit():
    edits = tuple(k for k, s in STATEMENTS.items() if not s.once)
    assert edits == VERBS
    assert all(STATEMENTS[v].field == "interventions" for v in VERBS)


def test_once_statements_are_refused_twice_and_edits_are_kept_in_order():
    with pytest.raises(nv.NbveneError, match="a second 'metric' statement"):
        nv.parse('metric: p(" a")\nmetric: kl')
    text = "zero: z layer=0\npatch: z layer=1\nzero: z layer=2"
    spec = nv.parse(text)
    assert [i.verb for i in spec.interventions] == ["zero", "patch", "zero"]
    assert format_spec(spec) == text


def test_a_verb_takes_the_options_its_entry_lists():
    for verb in VERBS:
        for option in ("window", "over", "via"):
            value = {"window": "window=2", "over": "over={o}", "via": "via {f}"}[option]
            line = f"{verb}: block_output layer=0 {value}"
            if verb == "steer":
                line += " by {v}" if option != "via" else ""
            if option in STATEMENTS[verb].options:
                nv.parse(line)
            else:
                with pytest.raises(nv.NbveneError, match=f"takes no '{option}'"):
                    nv.parse(line)


def test_old_json_with_intervention_loads_as_edit():
    spec = nv.parse('base: "a"\npatch: block_output layer=0')
    document = nv.spec.to_json(spec)
    assert '"Edit"' in document
    assert nv.spec.from_json(document.replace('"Edit"', '"Intervention"')) == spec
