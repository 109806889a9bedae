"""Every bad input raises one NbveneError that names the spec line, quotes it, and says what to
do — before anything runs."""

import pytest
import torch

import nbvene as nv

BASE = 'base: "The Colosseum is located in the city of"\n'
SOURCE = 'source: "The Eiffel Tower is located in the city of"\n'
METRIC = 'metric: logit_diff(" Paris", " Rome")\n'


@pytest.fixture(scope="module")
def llama():
    return nv.models.tiny("llama")


def error(spec: str, llama, **kwargs) -> nv.NbveneError:
    model, tok = llama
    with pytest.raises(nv.NbveneError) as info:
        nv.run(spec, model=model, tokenizer=tok, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("body", "line", "message", "hint"),
    [
        ("patch: blok_output layer=0\n", 3, "unknown component 'blok_output'", "block_output"),
        ("patch: resid_psot layer=0\n", 3, "unknown component", "resid_post"),
        (
            "patch: block_output layer=7\n",
            3,
            "layer 7 is out of range: the model has 2 layers",
            "layer=0..1",
        ),
        ("patch: block_output layer=0..9\n", 3, "layer 2 is out of range", None),
        (
            "patch: head_key_output layer=0 head=3\n",
            3,
            "head 3 is out of range: head_key_output has 2 key/value heads",
            "head=0..1",
        ),
        ("patch: head_query_output layer=0 head=4\n", 3, "has 4 heads", None),
        ("patch: block_output layer=0 head=1\n", 3, "head= needs a head-level site", "z, q"),
        ("patch: block_output layer=0 pos=40\n", 3, "pos=40 is past the prompt", "-1"),
        ('patch: block_output layer=0 pos="Eiffel"\n', 3, "'Eiffel' is not in the prompt", None),
        ("patch: block_output pos=-1\n", 3, "block_output needs layer=", "layer=*"),
        ("patch: blocks.1.hook_resid_pre layer=0\n", 3, "drop layer=", None),
        (
            "patch: model.layers[0].mlpp.output\n",
            3,
            "has no module 'model.layers.0.mlpp'",
            "model.layers.0.mlp",
        ),
        ("patch: block_output layer=2..1\n", 3, "the range 2..1 is empty", "3, 4, 5"),
    ],
)
def test_site_and_selector_errors(llama, body, line, message, hint):
    e = error(BASE + SOURCE + body + METRIC, llama)
    assert message in e.message
    assert e.line == line
    assert e.text == body.rstrip("\n")
    if hint:
        assert hint in e.hint


def test_metric_token_must_be_one_token(llama):
    e = error(BASE + SOURCE + 'patch: block_output layer=0\nmetric: p(" Pariser Platz")', llama)
    assert e.line == 4 and "tokens for this tokenizer" in e.message
    assert e.column == e.text.index('"')


def test_source_batch_must_match_base(llama):
    spec = 'base: ["a b", "c d", "e f"]\nsource: ["a b", "c d"]\npatch: block_output layer=0\n'
    e = error(spec + METRIC, llama)
    assert e.line == 2 and "2 source prompts for 3 base prompts" in e.message


def test_undefined_variable(llama):
    e = error("base: {prompts}\n" + SOURCE + "patch: block_output layer=0\n" + METRIC, llama)
    assert e.line == 1 and "{prompts} is not defined" in e.message and "namespace" in e.hint


def test_lengths_that_cannot_align(llama):
    short = 'base: "The Eiffel Tower is located in the city of"\nsource: "Rome"\n'
    e = error(short + "patch: block_output layer=0\n" + METRIC, llama)
    assert e.line == 3 and "differ in length" in e.message and "pos=a->b" in e.hint


def test_missing_pieces(llama):
    assert "no metric" in error(BASE + SOURCE + "patch: block_output layer=0", llama).message
    assert "needs a source" in error(BASE + "patch: block_output layer=0\n" + METRIC, llama).message
    e = error(BASE + 'zero: block_output layer=0\nmetric: p(" Paris") normalized', llama)
    assert e.line == 3 and "normalized needs a clean run" in e.message
    assert "no base" in error(SOURCE + "patch: block_output layer=0\n" + METRIC, llama).message


def test_not_a_model():
    with pytest.raises(nv.NbveneError, match=r"must be a torch\.nn\.Module"):
        nv.run(BASE, model="gpt2")


def test_two_statements_share_a_swept_axis(llama):
    model, tok = llama
    res = nv.run(
        BASE + SOURCE + "patch: head_query_output layer=* head=[0, 1]\n"
        "patch: head_key_output layer=* head=[0, 1]\n" + METRIC,
        model=model,
        tokenizer=tok,
    )
    assert res.axes == ("layer", "head") and res.values.shape == (2, 2)
    # 4 query heads, 2 key/value heads: head=* is out of range for the second statement
    e = error(
        BASE + SOURCE + "patch: head_query_output layer=* head=*\n"
        "patch: head_key_output layer=* head=*\n" + METRIC,
        llama,
    )
    assert e.line == 4 and "head 2 is out of range" in e.message
    e = error(
        BASE + SOURCE + "patch: block_output layer=* pos=-1\n"
        "patch: mlp_output layer=0..1 pos=-1\n" + METRIC,
        llama,
    )
    assert e.line == 4 and "two statements sweep layer= differently" in e.message


def test_layer_in_a_hook_name_is_checked(llama):
    e = error(BASE + SOURCE + "patch: blocks.5.hook_resid_pre pos=-1\n" + METRIC, llama)
    assert e.line == 3 and "layer 5 is out of range" in e.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("patch: block_output layer=0 by {v}", "patch: takes no 'by'"),
        ("zero: block_output layer=0 over={p}", "zero: takes no 'over'"),
        ("add: block_output layer=0 by {v} via {f}", "by and via together"),
        ("patch: block_output layer=0 window=3 window=4", "window given twice"),
        ("collect: block_output layer=0 window=3", "collect: takes no 'window'"),
    ],
)
def test_options_a_verb_does_not_take(llama, body, message):
    e = error(BASE + SOURCE + body + "\n" + METRIC, llama)
    assert e.line == 3 and message in e.message


@pytest.mark.parametrize(
    ("value", "message"),
    [("3", "must be an int, a list of ints"), ([], "must be an int"), (True, "must be an int")],
)
def test_positions_from_the_namespace_are_checked(llama, value, message):
    e = error(
        BASE + SOURCE + "patch: block_output layer=0 pos={p}\n" + METRIC,
        llama,
        namespace={"p": value},
    )
    assert e.line == 3 and message in e.message


def test_a_vector_of_the_wrong_size(llama):
    spec = BASE + "add: block_output layer=0 by {v}\n" + METRIC
    e = error(spec, llama, namespace={"v": torch.ones(63)})
    assert e.line == 2 and "the vector has 63 numbers, and each unit here has 64" in e.message


def test_collect_needs_as_many_positions_per_example(llama):
    spec = (
        'base: ["The city of Paris", "We went to the city"]\n'
        'collect: block_output layer=0 pos="city"'
    )
    model, tok = llama
    e = error(spec.replace('"city"', "{p}"), llama, namespace={"p": [[0, 1], [2]]})
    assert e.line == 2 and "different numbers of positions" in e.message
    nv.plan(spec, model=model, tokenizer=tok)  # one position each: fine


def test_pandas_positions_are_token_positions(llama):
    model, tok = llama
    res = nv.run(
        BASE + SOURCE + "patch: block_output layer=0 pos=-3..-1\n" + METRIC,
        model=model,
        tokenizer=tok,
    )
    n = len(tok("The Colosseum is located in the city of").input_ids)
    assert list(res.to_pandas()["pos"]) == [n - 3, n - 2, n - 1]
