"""Any `%%intervene` line either runs or gives an NbveneError (shown without a traceback), and
leaves the model as it was: lines made of the magic's options, hostile values and stray words."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbvene as nv

WORDS = (
    "model",
    "tok",
    "-t",
    "--tokenizer",
    "-o",
    "--out",
    "res",
    "--device",
    "cpu",
    "meta",
    "--max-batch",
    "--max-memory",
    "--max-cells",
    "--sites",
    "--dry-run",
    "--show-code",
    "--no-display",
    "0",
    "-1",
    "1",
    "3",
    "9" * 400,
    "1e9",
    "2GB",
    "-2GB",
    "nan",
    "x",
    "BASE",
    "max_batch=0",
    "max_cells=-1",
    "max_cells=1",
    "tokenizer=model",
    "out=1x",
    "<<",
    "res <<",
    "--max-cells=0",
    "--max-batch=" + "9" * 30,
    '"',
    "'",
    "\t",
    "é",
    "\x00",
    "{",
    "}",
)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(words=st.lists(st.sampled_from(WORDS), max_size=6))
def test_a_fuzzed_line_runs_or_raises_an_nbvene_error(shell, cell, patch_spec, tiny, words):
    model, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ran = cell("%%intervene " + " ".join(words) + "\n" + patch_spec)
    assert ran.error is None or isinstance(ran.error, nv.NbveneError), (words, ran.out, ran.err)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
