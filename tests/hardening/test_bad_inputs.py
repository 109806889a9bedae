"""Inputs that once escaped as Python errors, or ran into sizes nothing bounded: each now runs,
or raises an NbveneError on its spec line with a fix, before anything big is made."""

from __future__ import annotations

import pytest
import torch

import nbvene as nv

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"
ZERO = f'base: "{BASE}"\nzero: block_output layer=0\nmetric: p(" Paris")'
PATCH = f'base: "{BASE}"\nsource: "{SOURCE}"\npatch: block_output layer=0 pos=-1 via {{f}}\n'
TRACE = 'base: "The Eiffel Tower is"\ncorrupt: noise 3 on "Eiffel"{options}\n'
RESTORE = 'restore: block_output layer=0\nmetric: p(" Paris")'


@pytest.fixture(scope="module")
def gpt2():
    return nv.models.tiny("gpt2")


@pytest.fixture(scope="module")
def llama():
    return nv.models.tiny("llama")


def error_of(call, spec: str, model, **namespace) -> nv.NbveneError:
    model, tok = model
    with pytest.raises(nv.NbveneError) as info:
        call(spec, model=model, tokenizer=tok, namespace=namespace)
    return info.value


def on_line(e: nv.NbveneError, line: int, *words: str) -> None:
    """The error names its spec line, quotes it with a caret, and says each of `words`."""
    assert e.line == line and e.text is not None and e.column is not None, str(e)
    assert all(w in str(e) for w in words), str(e)


# --- text in quotes ------------------------------------------------------------------------------


@pytest.mark.parametrize("inside", ["\t", "\x00", "\x07"], ids=["tab", "nul", "bell"])
def test_control_characters_in_a_prompt_are_kept(gpt2, inside):
    model, tok = gpt2
    res = nv.run(
        f'base: "a{inside}b"\nzero: block_output layer=0\nmetric: p(" Paris")',
        model=model,
        tokenizer=tok,
    )
    assert res.values.shape == ()


@pytest.mark.parametrize(
    ("written", "words"),
    [('"\\ud800"', ["surrogate"]), ('"\ud800"', ["surrogate"]), ('"a\\qb"', ["bad escape"])],
    ids=["escaped-surrogate", "lone-surrogate", "bad-escape"],
)
def test_text_that_is_no_string_is_refused_on_its_line(gpt2, written, words):
    e = error_of(nv.run, f"base: {written}\nzero: block_output layer=0", gpt2)
    on_line(e, 1, *words)


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("big", ["1" + "0" * 26, "9" * 400], ids=["26-digits", "400-digits"])
def test_huge_integers_are_refused_on_their_line(gpt2, big):
    for spec in (
        TRACE.format(options=f" seed={big}") + RESTORE,
        TRACE.format(options=f" samples={big}") + RESTORE,
        f'base: "{BASE}"\nzero: block_output layer=-1..{big}\nmetric: p(" Paris")',
    ):
        on_line(error_of(nv.plan, spec, gpt2), spec.count("\n") if "zero" in spec else 2)


def test_a_400_digit_noise_scale_is_refused_not_inf(gpt2):
    e = error_of(
        nv.plan,
        'base: "The Eiffel Tower is"\ncorrupt: noise ' + "9" * 400 + ' on "Eiffel"\n' + RESTORE,
        gpt2,
    )
    on_line(e, 2, "too large")


def test_a_range_past_the_model_stops_at_its_first_bad_value(gpt2):
    e = error_of(
        nv.plan, f'base: "{BASE}"\nzero: block_output layer=0..{2**62}\nmetric: p(3)', gpt2
    )
    on_line(e, 2, "layer 2 is out of range")


@pytest.mark.parametrize("token", ["1000", "-1"])
def test_a_metric_token_id_outside_the_vocabulary_is_refused(gpt2, token):
    e = error_of(nv.plan, ZERO.replace('p(" Paris")', f"p({token})"), gpt2)
    on_line(e, 3, f"output {token}", "0..999")


# --- values from the namespace -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (torch.tensor([-5, 3]), ["token id -5", "0..999"]),
        (torch.tensor([10**6]), ["token id 1000000"]),
        (torch.randn(2, 5), ["float32", "token ids"]),
        (torch.randn(2, 5).half(), ["float16"]),
    ],
    ids=["negative", "past-vocabulary", "float", "half"],
)
def test_token_ids_are_checked_against_the_vocabulary(gpt2, ids, words):
    e = error_of(nv.run, "base: {ids}\nzero: block_output layer=0\nmetric: p(3)", gpt2, ids=ids)
    on_line(e, 1, "{ids}", *words)


def test_a_tensor_as_the_noise_subject_is_refused(gpt2):
    spec = 'base: "The Eiffel Tower is"\ncorrupt: noise 3 on {s}\n' + RESTORE
    on_line(error_of(nv.run, spec, gpt2, s=torch.tensor([1, 2])), 2, "subject's text")


def test_from_a_source_no_line_names(gpt2):
    e = error_of(nv.run, f'base: "{BASE}"\npatch: block_output layer=0 from s1\nmetric: kl', gpt2)
    on_line(e, 2, "no source is named 's1'", 'source s1: "..."')


@pytest.mark.parametrize(
    "statement",
    ["collect: block_output layer=0 pos=0->1", "zero: block_output layer=0 pos=last->last"],
)
def test_a_position_map_with_no_source_is_refused(gpt2, statement):
    e = error_of(nv.run, f'base: "{BASE}"\n{statement}\nmetric: p(" Paris")', gpt2)
    on_line(e, 2, "a->b")


# --- the user's own code and vectors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("f", "words"),
    [
        (lambda base, source: None, ["gave back None", "(1, 64)"]),
        (lambda base, source: torch.zeros(3), ["gave back shape (3,)"]),
    ],
    ids=["none", "wrong-width"],
)
def test_a_via_function_giving_back_the_wrong_thing(gpt2, f, words):
    model, _ = gpt2
    e = error_of(nv.run, PATCH + 'metric: p(" Paris")', gpt2, f=f)
    on_line(e, 3, *words)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_via_function_that_fails_is_chained_on_its_line(gpt2):
    def fails(base, source):
        return base / 0 if base is None else 1 / 0

    e = error_of(nv.run, PATCH + 'metric: p(" Paris")', gpt2, f=fails)
    on_line(e, 3, "fails raised ZeroDivisionError")
    assert isinstance(e.__cause__, ZeroDivisionError)


def test_a_steering_vector_of_the_wrong_width_in_generate(gpt2):
    spec = 'steer: block_output layer=0 by {v} * 2\ngenerate: "I think" max_new_tokens=3'
    e = error_of(nv.generate, spec, gpt2, v=torch.zeros(63))
    on_line(e, 1, "63 numbers", "64")
    assert e.column == e.text.index("by")


def test_the_vector_width_error_of_add_quotes_its_line(gpt2):
    spec = f'base: "{BASE}"\nadd: block_output layer=0 pos=-1 by {{v}}\nmetric: p(" Paris")'
    e = error_of(nv.run, spec, gpt2, v=torch.zeros(63))
    on_line(e, 2, "63 numbers")
    assert str(e).splitlines()[1].strip() == "add: block_output layer=0 pos=-1 by {v}"


# --- sizes ---------------------------------------------------------------------------------------


def test_samples_beyond_max_cells_are_refused_with_the_count(gpt2):
    e = error_of(nv.plan, TRACE.format(options=" samples=100000000000") + RESTORE, gpt2)
    on_line(e, 2, "100,000,000,000 patched runs", "max_cells=1,000,000", "max_cells=100000000000")


def test_max_cells_is_a_limit_the_user_raises(gpt2):
    model, tok = gpt2
    spec = f'base: "{BASE}"\nsource: "{SOURCE}"\npatch: block_output layer=* pos=*\nmetric: kl'
    with pytest.raises(nv.NbveneError, match="22 patched runs"):
        nv.plan(spec, model=model, tokenizer=tok, max_cells=21)
    plan = nv.plan(spec, model=model, tokenizer=tok, max_cells=22)
    described = plan.describe()
    assert "grid: layer=2 × pos=11" in described and "patched runs: 22" in described
    assert "GFLOP" in described and "memory: about" in described
    with pytest.raises(nv.NbveneError, match="max_cells"):
        nv.run(spec, model=model, tokenizer=tok, max_cells=10)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_prompt_longer_than_the_context_window(family, gpt2, llama):
    model = {"gpt2": gpt2, "llama": llama}[family]
    long = "word " * 200
    e = error_of(nv.run, f'base: "{long}"\nzero: block_output layer=0\nmetric: p(" Paris")', model)
    on_line(e, 1, "the model takes at most 128")
    spec = f'steer: block_output layer=0 by {{v}} * 2\ngenerate: "{long}" max_new_tokens=3'
    on_line(error_of(nv.generate, spec, model, v=torch.zeros(64)), 2, "at most 128")


def test_max_new_tokens_past_the_context_window(gpt2):
    spec = 'steer: block_output layer=0 by {v} * 2\ngenerate: "I think" max_new_tokens=100000000'
    e = error_of(nv.generate, spec, gpt2, v=torch.zeros(64))
    on_line(e, 2, "100000000 new ones", "128 positions")


def test_a_strength_sweep_of_too_many_values(gpt2):
    spec = f'base: "{BASE}"\nsteer: block_output layer=0 by {{v}} * 0..1000000 step 1\nmetric: kl'
    on_line(error_of(nv.run, spec, gpt2, v=torch.zeros(64)), 2, "more than 10,000")


def test_a_built_in_intervention_that_finds_the_width_only_when_run(gpt2):
    e = error_of(nv.run, PATCH.replace("{f}", "rotated(k=100000)") + "metric: kl", gpt2)
    on_line(e, 3, "k=100000 is more than the 64 units")
    assert e.column == e.text.index("via")


@pytest.mark.parametrize("limit", [0, -1, 2.5])
def test_max_cells_is_a_whole_number_of_at_least_one(gpt2, limit):
    model, tok = gpt2
    with pytest.raises(nv.NbveneError, match="max_cells must be"):
        nv.run(ZERO, model=model, tokenizer=tok, max_cells=limit)


# --- the keyword arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "spec", "arguments", "words"),
    [
        (nv.run, 123, {}, "a spec is text"),
        (nv.plan, b"base", {}, "a spec is text"),
        (nv.generate, None, {}, "a spec is text"),
        (nv.run, ZERO, {"tokenizer": "tok"}, "tokenizer must be a tokenizer"),
        (nv.run, ZERO, {"namespace": [1, 2]}, "namespace must map names"),
        (nv.run, ZERO, {"sites": 5}, "sites must map component names"),
        (nv.run, ZERO, {"max_batch": "a"}, "max_batch must be at least 1"),
        (nv.run, ZERO, {"progress": 5}, "progress must be a function"),
    ],
)
def test_arguments_of_the_wrong_kind(gpt2, call, spec, arguments, words):
    model, tok = gpt2
    with pytest.raises(nv.NbveneError, match=words):
        call(spec, model=model, **{"tokenizer": tok, **arguments})


def test_a_vector_made_from_prompts_too_long_for_the_model(gpt2):
    spec = 'steer: block_output layer=0 by mean_diff({a}, {b}) * 2\ngenerate: "I think"'
    e = error_of(nv.generate, spec, gpt2, a=["word " * 200], b=["x"])
    on_line(e, 1, "the model takes at most 128")


@pytest.mark.parametrize("call", [nv.plan, nv.train])
def test_a_steering_spec_where_a_patching_spec_belongs(gpt2, call):
    spec = f'base: "{BASE}"\nsteer: block_output layer=0 by {{v}} * 2\nlabel: {{label}}'
    e = error_of(call, spec, gpt2, v=torch.zeros(64), label=[" Paris"])
    assert "this is a steering spec" in e.message


def test_an_empty_stop_string_is_refused_not_an_empty_text(gpt2):
    spec = 'steer: block_output layer=0 by {v} * 2\ngenerate: "I think" stop=""'
    on_line(error_of(nv.generate, spec, gpt2, v=torch.zeros(64)), 2, 'stop=""')
