"""A `discover:` spec's mistakes are NbveneErrors placed on the spec line they are about,
raised before the model runs, as for every other statement."""

import pytest

import nbvene as nv

BASE = '"When Mary and John went to the store, John gave a drink to"'
SOURCE = '"When Mary and John went to the store, Mary gave a drink to"'
DISCOVER = "discover: circuit by eap top=20"
METRIC = 'metric: logit_diff(" Mary", " John")'


@pytest.fixture(scope="module")
def gpt2():
    return nv.models.tiny("gpt2")


def spec(*lines: str) -> str:
    return "\n".join(lines)


def error(gpt2, text: str, namespace=None) -> nv.NbveneError:
    model, tok = gpt2
    with pytest.raises(nv.NbveneError) as raised:
        nv.discover(text, model=model, tokenizer=tok, namespace=namespace, progress=print)
    return raised.value


def placed(e: nv.NbveneError, text: str, line: int, under: str | None = None) -> None:
    """The error names `line`, shows its text and puts the caret under `under`."""
    written = text.splitlines()[line - 1]
    assert e.line == line and e.text == written
    if under is not None:
        assert written[e.column :].startswith(under)


@pytest.mark.parametrize(
    ("extra", "keyword"),
    [
        ("patch: block_output layer=* pos=-1", "patch"),
        ("steer: block_output layer=0 by {v}", "steer"),
        ("zero: z layer=0 head=0", "zero"),
        ('corrupt: noise 3σ on "Mary"', "corrupt"),
        ("estimate: attribution", "estimate"),
        ("label: {labels}", "label"),
        ('generate: "Hi" max_new_tokens=2', "generate"),
    ],
)
def test_statements_of_other_runs_are_refused_on_their_line(gpt2, extra, keyword):
    text = spec(f"base: {BASE}", f"source: {SOURCE}", DISCOVER, extra, METRIC)
    e = error(gpt2, text)
    assert e.message == f"{keyword}: has no place in a discover: spec"
    placed(e, text, 4, keyword)


def test_a_named_source_is_refused(gpt2):
    text = spec(f"base: {BASE}", f"source: {SOURCE}", f"source s1: {SOURCE}", DISCOVER, METRIC)
    e = error(gpt2, text)
    assert "named source 's1'" in e.message
    placed(e, text, 3)


@pytest.mark.parametrize("missing", ["base", "source"])
def test_base_and_source_are_needed(gpt2, missing):
    lines = [f"base: {BASE}", f"source: {SOURCE}", DISCOVER, METRIC]
    lines = [x for x in lines if not x.startswith(missing)]
    text = spec(*lines)
    e = error(gpt2, text)
    assert e.message.startswith(f"discover: needs {missing}: prompts")
    placed(e, text, 2, "discover")


def test_a_metric_is_needed(gpt2):
    text = spec(f"base: {BASE}", f"source: {SOURCE}", DISCOVER)
    e = error(gpt2, text)
    assert e.message.startswith("discover: needs a metric")
    placed(e, text, 3, "discover")


def test_base_and_source_of_different_token_lengths(gpt2):
    text = spec(f"base: {BASE}", 'source: "When Mary went"', DISCOVER, METRIC)
    e = error(gpt2, text)
    assert e.message.startswith("the base prompt has 14 tokens and its source 3: ['When'")
    assert "same token length" in e.hint
    placed(e, text, 2, "source")


def test_one_source_per_base_prompt_or_one_for_all(gpt2):
    text = spec("base: {b}", "source: {s}", DISCOVER, METRIC)
    e = error(gpt2, text, {"b": ["a b", "c d", "e f"], "s": ["a c", "c e"]})
    assert e.message == "3 base prompts and 2 source prompts"
    placed(e, text, 2, "source")
    e = error(gpt2, text, {"b": ["a b", "c d e"], "s": ["a c", "c e"]})
    assert e.message.startswith("base prompt 1 has 3 tokens and its source 2")


@pytest.mark.parametrize(
    ("metric", "message", "under"),
    [
        ("metric: kl", "kl compares two runs", "kl"),
        ('metric: logit_diff(" Mary", " John") normalized', "discover: normalizes", "normalized"),
        ('metric: p(" Mary and")', "' Mary and' is 2 tokens", '" Mary and"'),
        ("metric: logit_diff({correct}, {wrong})", "{correct} is not defined", "{correct}"),
    ],
)
def test_metric_mistakes_are_on_the_metric_line(gpt2, metric, message, under):
    text = spec(f"base: {BASE}", f"source: {SOURCE}", DISCOVER, metric)
    e = error(gpt2, text)
    assert e.message.startswith(message)
    placed(e, text, 4, under)


def test_one_metric_token_per_base_prompt(gpt2):
    text = spec("base: {b}", "source: {s}", DISCOVER, "metric: logit_diff({correct}, {wrong})")
    names = {"b": ["a b", "c d"], "s": ["a c", "c e"], "correct": [" a", " b", " c"], "wrong": " d"}
    e = error(gpt2, text, names)
    assert e.message == "{correct} holds 3 tokens for 2 base prompts"
    placed(e, text, 4, "{correct}")


def test_a_given_edge_the_model_lacks(gpt2):
    text = spec(
        f"base: {BASE}", f"source: {SOURCE}", "discover: circuit of [a7.h0 -> logits]", METRIC
    )
    e = error(gpt2, text)
    assert e.message == "'a7.h0 -> logits' is not an edge of this model"
    placed(e, text, 3, "a7.h0")


def test_nv_plan_and_nv_discover_say_which_runs_which(gpt2):
    model, tok = gpt2
    text = spec(f"base: {BASE}", f"source: {SOURCE}", DISCOVER, METRIC)
    with pytest.raises(nv.NbveneError, match=r"a discover: spec runs with nv\.discover") as raised:
        nv.plan(text, model=model, tokenizer=tok)
    assert raised.value.line == 3
    with pytest.raises(nv.NbveneError, match=r"nv\.discover runs a spec with a discover: line"):
        nv.discover(spec(f"base: {BASE}", METRIC), model=model, tokenizer=tok)
    with pytest.raises(nv.NbveneError, match="progress must be a function"):
        nv.discover(text, model=model, tokenizer=tok, progress=3)


def test_a_spec_built_by_hand_is_checked_too(gpt2):
    model, tok = gpt2
    parts = {
        "base": nv.spec.Text("a b"),
        "source": nv.spec.Text("a c"),
        "discover": nv.spec.Discover("eap"),
        "metric": nv.spec.Metric("p", (" a",)),
    }
    for extra, keyword in [
        ({"interventions": (nv.spec.Edit("zero", "block_output"),)}, "zero"),
        ({"estimate": "attribution"}, "estimate"),
    ]:
        with pytest.raises(nv.NbveneError, match=f"{keyword}: has no place in a discover: spec"):
            nv.discover(nv.Spec(**parts, **extra), model=model, tokenizer=tok)
