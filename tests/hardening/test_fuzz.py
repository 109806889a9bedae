"""Any spec either runs or raises an NbveneError, and leaves the model as it was: the doc
examples of docs/spec.md and docs/steering.md, mutated (see fuzz.py), through nv.run, nv.plan
and nv.generate on tiny GPT-2 and Llama.

    NBVENE_FUZZ_EXAMPLES=10000 pytest tests/hardening/test_fuzz.py   # the long run
"""

from __future__ import annotations

import os

import fuzz
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbvene as nv

EXAMPLES = int(os.environ.get("NBVENE_FUZZ_EXAMPLES", "2000"))
MODELS = {"gpt2": nv.models.tiny("gpt2"), "llama": nv.models.tiny("llama")}
BEFORE = {
    name: {k: v.clone() for k, v in m.state_dict().items()} for name, (m, _) in MODELS.items()
}
SEEDS = fuzz.seeds()

# (kind, where, what): most edits keep the spec parseable, so that the checks past the parser
# (the model's sizes, the namespace's values, the user's functions) are reached
kinds = st.sampled_from((0, 1, 2, 3, 4, 5, 5, 6, 6, 6, 7, 7, 7, 7, 8, 8, 8, 8))
edits = st.tuples(kinds, st.integers(0, 998), st.integers(0, 998))


def test_the_docs_give_the_fuzzer_its_seeds():
    entries = {entry for entry, _ in SEEDS}
    assert len(SEEDS) >= 40 and entries == {"run", "plan", "generate"}


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.sampled_from(SEEDS),
    changes=st.lists(edits, min_size=1, max_size=3),
    family=st.sampled_from(sorted(MODELS)),
)
def test_a_mutated_spec_runs_or_raises_an_nbvene_error(seed, changes, family):
    entry, text = seed
    model, tok = MODELS[family]
    # max_cells keeps a sweep the mutation made large (it is refused, not run) within seconds
    error = fuzz.attempt(entry, fuzz.mutate(text, changes), model, tok, max_cells=2000)
    if error is not None and not isinstance(error, nv.NbveneError):
        raise error
    if error is not None:
        assert error.message  # and names its line where a line is at fault
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in BEFORE[family].items())


@settings(
    max_examples=max(50, EXAMPLES // 20),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(changes=st.lists(edits, min_size=1, max_size=3), family=st.sampled_from(sorted(MODELS)))
def test_a_mutated_training_spec_trains_or_raises_an_nbvene_error(changes, family):
    model, tok = MODELS[family]
    error = fuzz.attempt("train", fuzz.mutate(fuzz.TRAIN, changes), model, tok)
    if error is not None and not isinstance(error, nv.NbveneError):
        raise error
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in BEFORE[family].items())


@pytest.mark.parametrize("line", fuzz.LINES)
def test_every_hostile_line_runs_or_raises_an_nbvene_error(line):
    model, tok = MODELS["gpt2"]
    for entry, text in SEEDS[:: max(1, len(SEEDS) // 6)]:
        rest = text.partition("\n")[2]
        error = fuzz.attempt(entry, line + "\n" + rest, model, tok, max_cells=2000)
        if error is not None and not isinstance(error, nv.NbveneError):
            raise error
