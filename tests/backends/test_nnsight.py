"""The nnsight backend: `nv.run(spec, model=nnsight.LanguageModel(...))` gives nbvene's own
engine's numbers within 1e-5 on every statement and site it supports (tiny GPT-2 and tiny
Llama), refuses the rest by name, and builds a valid NDIF request for a ROME trace without
sending it."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import nbvene as nv

nnsight = pytest.importorskip("nnsight")

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"
PAIR = f'base: "{BASE}"\nsource: "{SOURCE}"\n'
METRIC = '\nmetric: logit_diff(" Paris", " Rome")'
ROME = f'base: "{SOURCE}"\ncorrupt: noise 3σ on "Eiffel Tower" seed=5\n'
FAMILIES = ["gpt2", "llama"]
SPECS = {
    "patch block_output": PAIR + "patch: block_output layer=* pos=-1" + METRIC,
    "restore mlp_output": PAIR + "restore: mlp_output layer=* pos=*" + METRIC,
    "patch attention_output": PAIR + "patch: attention_output layer=1 pos=*" + METRIC,
    "patch head z": PAIR + "patch: z layer=* head=* pos=-1" + METRIC,
    "add a vector": f'base: "{BASE}"\nadd: block_output layer=1 by {{v}}' + METRIC,
    "zero ablation": f'base: "{BASE}"\nzero: mlp_output layer=* pos=*' + METRIC,
    "mean ablation": f'base: "{BASE}"\nmean: block_output layer=0 pos=* over={{prompts}}' + METRIC,
    "ROME trace": ROME + 'restore: block_output layer=* pos=*\nmetric: p(" Paris")',
    "ROME trace, samples, normalized": ROME.replace("seed=5", "samples=3 seed=5")
    + 'restore: mlp_output layer=* pos=*\nmetric: p(" Paris") normalized',
    "two examples, kl": (
        f'base: ["{BASE}", "The Louvre is in"]\nsource: ["{SOURCE}", "Big Ben is in"]\n'
        "patch: z layer=1 head=* pos=-1\nmetric: kl"
    ),
}


@functools.cache
def models(family: str):
    model, tok = nv.models.tiny(family, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LanguageModel's deprecation notice
        lm = nnsight.LanguageModel(model, tokenizer=tok)
    return model, tok, lm


def namespace(model) -> dict:
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    return {"v": vector, "prompts": ["Hello world", "A b c d e"]}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", list(SPECS))
def test_the_nnsight_backend_gives_nbvenes_numbers(family, name):
    model, tok, lm = models(family)
    ns = namespace(model)
    ours = nv.run(SPECS[name], model=model, tokenizer=tok, namespace=ns)
    theirs = nv.run(SPECS[name], model=lm, namespace=ns, max_batch=4)
    assert theirs.axes == ours.axes
    torch.testing.assert_close(theirs.values, ours.values, atol=1e-5, rtol=0)
    for baseline in ("clean", "corrupted"):
        mine, engine = getattr(theirs, baseline), getattr(ours, baseline)
        assert (mine is None) == (engine is None), baseline
        if engine is not None:
            torch.testing.assert_close(mine, engine, atol=1e-5, rtol=0)
    if ours.corrupted is not None and not name.startswith("two"):
        changed = (theirs.values - ours.corrupted.reshape(-1)[0]).abs().max()
        assert changed > 0, "the edits change the run"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_component_but_attention_weights_and_resid_mid_patches_alike(family):
    """Each component of the family at layer 1, last position (every head), through nnsight
    and through nbvene's engine."""
    model, tok, lm = models(family)
    sites = nv.SiteMap(model)
    for component in sites.parts:
        if component in ("attention_weight", "resid_mid"):
            continue
        heads = " head=*" if sites.heads(sites.resolve(component)) is not None else ""
        spec = PAIR + f"patch: {component} layer=1 pos=-1{heads}" + METRIC
        ours = nv.run(spec, model=model, tokenizer=tok).values
        theirs = nv.run(spec, model=lm).values
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0, msg=component)


def test_the_numbers_are_nnsights_not_a_second_call_of_nbvenes_engine(monkeypatch):
    import nbvene.api

    def no_engine(*args, **kwargs):
        raise AssertionError("nbvene's engine ran")

    monkeypatch.setattr(nbvene.api, "execute", no_engine)
    model, _, lm = models("gpt2")
    result = nv.run(SPECS["patch block_output"], model=lm)
    assert result.values.shape == (model.config.n_layer,)
    assert float((result.values - result.corrupted).abs().max()) > 1e-4


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("collect: block_output layer=1 pos=*", "collect:"),
        ("patch: attention_weight layer=1 pos=-1" + METRIC, "attention weights"),
        ("patch: resid_mid layer=1 pos=-1" + METRIC, "residual-sum sites"),
        ("patch: block_output layer=1 via rotated(k=1)" + METRIC, "trained interventions"),
    ],
)
def test_what_it_does_not_run_is_refused_by_name_with_the_fix(body, named):
    *_, lm = models("gpt2")
    with pytest.raises(nv.NbveneError) as error:
        nv.run(PAIR + body, model=lm)
    assert named in str(error.value)
    assert "model=lm._module" in error.value.hint


def test_remote_needs_an_nnsight_model():
    model, tok, _ = models("gpt2")
    with pytest.raises(nv.NbveneError, match="remote=True runs the spec on NDIF"):
        nv.run(SPECS["ROME trace"], model=model, tokenizer=tok, remote=True)


class NotSent(Exception):
    """Raised where the remote backend would open its connection."""


def test_a_remote_rome_trace_builds_a_valid_request_and_sends_nothing(monkeypatch):
    """`remote=True` goes through nnsight's RemoteBackend: the request it would send is built
    (model key, serialised trace), and it deserialises against the model into a trace that
    runs; the send itself is replaced, so nothing leaves the machine."""
    from nnsight.intervention.backends.remote import RemoteBackend
    from nnsight.schema.request import RequestModel

    *_, lm = models("gpt2")
    key = 'nnsight.modeling.language.LanguageModel:{"repo_id": "openai-community/gpt2"}'
    monkeypatch.setattr(type(lm), "to_model_key", lambda self: key)
    requests = []

    def request(self, envelope, tracer):
        blob = self._serialize(tracer)
        restored = RequestModel.deserialize(
            blob, lm._remoteable_persistent_objects(), compress=self.compress
        )
        requests.append((envelope, blob, restored))
        raise NotSent

    monkeypatch.setattr(RemoteBackend, "request", request)
    with pytest.raises(NotSent):
        nv.run(SPECS["ROME trace"], model=lm, remote=True)
    ((envelope, blob, restored),) = requests  # the first trace (the source run) stops it
    assert envelope.model_key == key
    assert RequestModel.model_validate_json(envelope.metadata()).model_key == key
    assert len(blob) > 0 and restored.info.code is not None


def test_the_remote_path_simulated_locally_gives_the_same_numbers():
    """nnsight's `remote="local"`: every trace is serialised, deserialised with nbvene and the
    other local modules hidden (as on the server), and run here."""
    model, tok, lm = models("llama")
    spec = SPECS["ROME trace"]
    ours = nv.run(spec, model=model, tokenizer=tok)
    theirs = nv.run(spec, model=lm, remote="local")
    torch.testing.assert_close(theirs.values, ours.values, atol=1e-5, rtol=0)
