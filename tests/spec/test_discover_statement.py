"""The `discover:` statement: its forms read, write back and survive JSON; each mistake is an
NbveneError with a caret under the word it is about; help and completion know it."""

import pytest

import nbvene as nv
from nbvene.magics.reference import help_text
from nbvene.spec import Discover, format_spec

ISSUE = """base:    {clean}
source:  {corrupted}
discover: circuit by eap top=200
metric:  logit_diff({correct}, {wrong})"""


@pytest.mark.parametrize(
    ("line", "found"),
    [
        ("circuit by eap top=200", Discover("eap", top=200)),
        ("circuit by acdc tau=0.02", Discover("acdc", tau=0.02)),
        ("circuit by eap-ig steps=5", Discover("eap-ig", steps=5)),
        (
            "circuit by eap threshold=0.1 ablation=mean",
            Discover("eap", threshold=0.1, ablation="mean"),
        ),
        ("circuit by eap", Discover("eap")),
        ("circuit by acdc", Discover("acdc")),
        (
            "circuit of [embed -> a0.h1.q, a0.h1 -> m1,m1 -> logits] ablation=mean",
            Discover(
                "given", ablation="mean", edges=("embed -> a0.h1.q", "a0.h1 -> m1", "m1 -> logits")
            ),
        ),
        ("circuit of []", Discover("given")),
    ],
)
def test_each_form_reads_writes_back_and_survives_json(line, found):
    spec = nv.parse("discover: " + line)
    assert spec.discover == found
    assert nv.parse(format_spec(spec)) == spec
    assert nv.spec.from_json(nv.spec.to_json(spec)) == spec


def test_the_issue_spec_parses_in_order_and_writes_back_as_written():
    spec = nv.parse(ISSUE)
    assert spec.discover == Discover("eap", top=200)
    assert spec.lines == {"base": 1, "source": 2, "discover": 3, "metric": 4}
    canonical = format_spec(spec)
    assert canonical.splitlines()[2] == "discover: circuit by eap top=200"
    assert nv.parse(canonical) == spec


@pytest.mark.parametrize(
    ("line", "message", "under"),
    [
        ("circuit by eapp", "unknown discovery method 'eapp'", "eapp"),
        ("circuit by path_patch", "unknown discovery method 'path_patch'", "path_patch"),
        ("circuits by eap", "expected 'circuit', found 'circuits'", "circuits"),
        ("circuit eap", "expected 'by', found 'eap'", "eap"),
        ("circuit by", "discover: needs a method", ""),
        ("", "expected 'circuit', found end of line", ""),
        ("circuit by eap top=5 threshold=0.1", "top and threshold together", "threshold"),
        ("circuit by eap tau=0.1", "by eap takes no tau=", "tau"),
        ("circuit by eap-ig tau=0.1", "by eap-ig takes no tau=", "tau"),
        ("circuit by acdc top=5", "by acdc takes no top=", "top"),
        ("circuit by acdc threshold=1", "by acdc takes no threshold=", "threshold"),
        ("circuit by eap steps=3", "by eap takes no steps=", "steps"),
        ("circuit by eap top=0", "top must be at least 1", "0"),
        ("circuit by eap top=2.5", "expected a whole number for top, found '2.5'", "2.5"),
        ("circuit by eap-ig steps=0", "steps must be at least 1", "0"),
        ("circuit by acdc tau=-1", "tau must be 0 or more", "-1"),
        ("circuit by eap top=3 top=4", "top given twice", "top=4"),
        ("circuit by eap topp=3", "unknown option 'topp' for discover", "topp"),
        ("circuit by eap ablation=zero", "unknown ablation 'zero'", "zero"),
        ("circuit of [a0.h1 -> a1.h0.x]", "'a0.h1 -> a1.h0.x' is not an edge", "a0.h1"),
        ("circuit of m0 -> logits", "expected [edges] after 'of'", ""),
        ("circuit of [m0 -> logits, m0 -> logits]", "the edge 'm0 -> logits' given twice", ""),
        ("circuit of [m0 -> logits] top=3", "unknown option 'top' for 'circuit of'", "top"),
    ],
)
def test_mistakes_are_placed_errors(line, message, under):
    text = "discover: " + line
    with pytest.raises(nv.NbveneError) as raised:
        nv.parse('base: "a"\n' + text)
    error = raised.value
    assert error.message == message
    assert error.line == 2 and error.text == text and error.column is not None
    if under:
        assert text[error.column :].startswith(under)


def test_once_a_spec():
    with pytest.raises(nv.NbveneError, match="a second 'discover' statement"):
        nv.parse("discover: circuit by eap\ndiscover: circuit by acdc")


def test_help_names_the_statement_its_forms_and_defaults():
    text = help_text()
    assert "  discover:" in text and "discover: circuit by acdc tau=0.02" in text
    one = help_text("discover")
    for written in ("top=100", "steps=5", "tau=0.02", "ablation=corrupted|mean", "eap-ig"):
        assert written in one
