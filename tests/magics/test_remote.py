"""`%%intervene --remote`: the cell runs through nnsight (on NDIF); a model that is not an
nnsight one is refused, and --show-code writes `remote=True`."""

from __future__ import annotations

import warnings

import pytest
import torch

import nbvene as nv

nnsight = pytest.importorskip("nnsight")


@pytest.fixture
def lm(shell, tiny):
    model, tok = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LanguageModel's deprecation notice
        shell.user_ns["lm"] = nnsight.LanguageModel(model, tokenizer=tok)
    return shell.user_ns["lm"]


def test_an_nnsight_model_runs_in_the_cell_with_nbvenes_numbers(cell, lm, patch_spec, expected):
    ran = cell("%%intervene lm tok\n" + patch_spec)
    assert ran.error is None, ran.out
    torch.testing.assert_close(ran.value.values, expected.values, atol=1e-5, rtol=0)


def test_remote_sends_the_trace_through_nnsights_remote_backend(cell, lm, patch_spec, monkeypatch):
    from nnsight.intervention.backends.remote import RemoteBackend

    key = 'nnsight.modeling.language.LanguageModel:{"repo_id": "openai-community/gpt2"}'
    monkeypatch.setattr(type(lm), "to_model_key", lambda self: key)
    sent = []

    def request(self, envelope, tracer):
        sent.append((envelope.model_key, self._serialize(tracer)))
        raise nv.NbveneError("not sent")

    monkeypatch.setattr(RemoteBackend, "request", request)
    ran = cell("%%intervene lm tok --remote\n" + patch_spec)
    assert "not sent" in str(ran.error)
    assert sent and sent[0][0] == key


def test_remote_without_an_nnsight_model_is_refused(cell, patch_spec):
    ran = cell("%%intervene model tok --remote\n" + patch_spec)
    assert isinstance(ran.error, nv.NbveneError)
    assert "remote=True runs the spec on NDIF" in ran.out


def test_show_code_writes_remote(cell, lm, patch_spec):
    ran = cell("%%intervene lm tok --remote --show-code --dry-run\n" + patch_spec)
    assert "remote=True" in ran.out
