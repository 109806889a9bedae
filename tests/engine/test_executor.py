"""The one forward executor: passes that keep activations stop after the last block they need,
with the same numbers as a full forward pass and no hook left behind; inputs go where the input
embeddings are; every site family declares its final norm (or none)."""

import pytest
import torch
from faults import Passes, Snapshot

import nbvene as nv
from nbvene.bind.prompts import tokenize
from nbvene.engine.executor import Executor, device_of, last_block
from nbvene.engine.hooks import Hooks
from nbvene.sites import SiteMap
from nbvene.sites.families import FAMILIES, FINAL_NORMS, Discovered, dimensions, final_norm

PROMPTS = ["The Colosseum is located in the city of", "Big Ben is in the city of"]


@pytest.fixture(scope="module")
def llama():
    return nv.models.tiny("llama", layers=4)


def at(model, component, layer):
    sites = SiteMap(model)
    return sites.site(sites.resolve(component), layer)


def full_forward_units(model, tok, site, prompts):
    """The site's units from a plain forward pass of the whole model, with a torch hook."""
    seen = []
    module = model.get_submodule(site.module)
    handle = module.register_forward_hook(
        lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        batch = [tokenize(tok, p) for p in prompts]
        ids, mask = Executor(model).pad(batch)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        handle.remove()
    return seen[0]


def test_a_storing_pass_stops_after_its_last_block_with_the_same_units(llama):
    model, tok = llama
    site = at(model, "block_output", 1)
    clean = Snapshot(model)
    prompts = [tokenize(tok, p) for p in PROMPTS]
    with Passes(model.model.layers[2]) as after, Passes(model.model.layers[1]) as inside:
        _, stored = Executor(model).stored(prompts, {site}, "test")
    assert inside.rows == [2] and after.rows == []  # block 1 ran, block 2 did not
    torch.testing.assert_close(stored[site], full_forward_units(model, tok, site, PROMPTS))
    clean.assert_clean()


def test_a_pass_that_reads_logits_runs_every_block(llama):
    model, tok = llama
    prompts = [tokenize(tok, p) for p in PROMPTS]
    with Passes(model.model.norm) as norm, Hooks(model):
        logits = Executor(model).forward(prompts)
    assert norm.rows == [2] and logits.shape == (2, model.config.vocab_size)


def test_a_vector_is_the_same_as_from_a_full_forward_pass(llama):
    model, tok = llama
    with Passes(model.model.layers[-1]) as last:
        v = nv.vector(PROMPTS[:1], PROMPTS[1:], model=model, tokenizer=tok, layer=1)
    assert last.rows == []
    site = at(model, "block_output", 1)
    plus, minus = (full_forward_units(model, tok, site, [p]) for p in PROMPTS)
    expected = plus[0, -1] - minus[0, -1]
    torch.testing.assert_close(v.values, expected.float())


def test_collect_and_mean_runs_give_the_numbers_of_full_passes(llama):
    model, tok = llama
    spec = f'base: "{PROMPTS[0]}"\ncollect: block_output layer=1 pos=*'
    with Passes(model.model.layers[-1]) as last:
        res = nv.run(spec, model=model, tokenizer=tok)
    assert last.rows == []
    site = at(model, "block_output", 1)
    expected = full_forward_units(model, tok, site, PROMPTS[:1])[0]
    torch.testing.assert_close(res.values.reshape(expected.shape), expected)


def test_no_stop_for_sites_outside_the_blocks(llama):
    model, _ = llama
    inside = at(model, "block_output", 2)
    assert last_block(model, {inside, at(model, "mlp_output", 0)}) is model.model.layers[2]
    assert last_block(model, set()) is None


def test_inputs_go_to_the_input_embeddings_device(llama):
    model, _ = llama
    assert device_of(model) == model.get_input_embeddings().weight.device
    assert device_of(torch.nn.Identity()) == torch.device("cpu")


@pytest.mark.parametrize(
    "family", [*FAMILIES, Discovered("layers", None, None)], ids=lambda f: f"{f.name}:{f.blocks}"
)
def test_every_family_declares_its_final_norm(family):
    assert family.name in FINAL_NORMS  # a path, or None: rows then run full forward passes
    final_norm(family)


def test_a_family_without_a_final_norm_entry_is_an_error():
    class New(Discovered):
        name = "new"

    with pytest.raises(LookupError, match="declares no final norm"):
        final_norm(New("layers", None, None))


def test_dimensions_come_from_the_family_adapter():
    model, _ = nv.models.tiny("gpt2", layers=3)
    dims = dimensions(model)
    assert (dims.hidden, dims.layers) == (model.config.n_embd, 3)
    assert dimensions(torch.nn.Identity()).hidden is None
