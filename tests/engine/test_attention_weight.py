"""attention_weight: read and patched through an eager attention registered for the run."""

import pytest
import torch

import nbvene as nv

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"


def collect(model, tok, text, body):
    return nv.run(f'base: "{text}"\n{body}', model=model, tokenizer=tok).values


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "opt", "bert", "phi3", "gemma2"])
def test_collected_weights_are_the_models_attentions(family):
    model, tok = nv.models.tiny(family)
    values = collect(model, tok, SOURCE, "collect: attention_weight layer=1 pos=-1")
    with torch.no_grad():
        ids = tok(SOURCE, return_tensors="pt")
        expected = model(**ids, output_attentions=True).attentions[1][0, :, -1]
    torch.testing.assert_close(values, expected, atol=1e-6, rtol=0)


def test_patched_weights_mix_the_base_values():
    """z at the last position = source's attention row × base's values (GQA: 2 query heads
    share each key/value head)."""
    model, tok = nv.models.tiny("llama")
    model.config._attn_implementation = "sdpa"
    weights = collect(model, tok, SOURCE, "collect: attention_weight layer=1 pos=-1 head=3")
    values = collect(model, tok, BASE, "collect: head_value_output layer=1 pos=* head=1")
    z = nv.run(
        f'base: "{BASE}"\nsource: "{SOURCE}"\n'
        "patch: attention_weight layer=1 pos=-1 head=3\n"
        "collect: head_attention_value_output layer=1 pos=-1 head=3",
        model=model,
        tokenizer=tok,
    ).values
    assert len(tok(BASE).input_ids) == len(tok(SOURCE).input_ids)
    torch.testing.assert_close(z, weights @ values, atol=1e-5, rtol=0)
    assert model.config._attn_implementation == "sdpa", "the user's setting is restored"


def test_zeroed_weights_give_zero_output():
    model, tok = nv.models.tiny("llama")
    z = collect(
        model,
        tok,
        BASE,
        "zero: attention_weight layer=0 pos=-1\ncollect: attention_value_output layer=0 pos=-1",
    )
    assert z.abs().max() == 0


def test_families_without_the_attention_interface_say_so():
    model, tok = nv.models.tiny("gpt_neo")
    with pytest.raises(nv.NbveneError, match="attention interface"):
        collect(model, tok, BASE, "collect: attention_weight layer=0 pos=-1")
