"""Tiny random models of every family, and their tokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedModel

from nbvene.errors import NbveneError
from nbvene.models import FAMILIES, tiny
from nbvene.models.tokenizer import tiny_tokenizer

PROMPT = "When John and Mary went to the store, John gave a bottle to"
SINGLE_TOKEN_WORDS = [
    " Paris",
    " Rome",
    " Mary",
    " John",
    " Tokyo",
    " London",
    " Berlin",
    " happy",
    " sad",
    " kind",
    " cruel",
    " the",
    " city",
    " of",
]


def _layer_count(model: PreTrainedModel) -> int:
    config = model.config
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(config, name):
            return getattr(config, name)
    raise AssertionError(f"no layer count in {type(config).__name__}")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_builds_and_runs(family):
    model, tok = tiny(family, layers=3)
    assert model.config.model_type == FAMILIES[family].model_type
    assert not model.training
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "eager"
    assert model.get_input_embeddings().weight.shape == (len(tok), 64)
    assert _layer_count(model) == 3
    assert model.name_or_path == f"nbvene-tiny-{family}"

    batch = tok([PROMPT, "I think that you are"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    # Random weights still make the logits depend on the input.
    assert not torch.allclose(logits[0, 4], logits[0, 5])


def test_masked_families_are_masked_language_models():
    masked = {name for name, family in FAMILIES.items() if family.masked}
    assert masked == {"bert", "roberta"}
    for name in masked:
        model, tok = tiny(name)
        assert type(model).__name__.endswith("ForMaskedLM")
        ids = tok("The capital of France is [MASK].")["input_ids"]
        assert ids[-2] == tok.mask_token_id
    _, causal_tok = tiny("gpt2")
    assert causal_tok.mask_token is None


def test_llama_style_families_use_grouped_query_attention():
    for name in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo"):
        model, _ = tiny(name)
        attention = model.model.layers[0].self_attn
        assert attention.q_proj.out_features == 4 * 16, name
        assert attention.k_proj.out_features == 2 * 16, name


def test_config_overrides_win_in_the_family_names():
    model, _ = tiny("llama", hidden_size=128, num_attention_heads=8)
    assert model.config.hidden_size == 128
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (128, 128)
    model, _ = tiny("gpt2", n_embd=32, layers=1)
    assert model.transformer.wte.weight.shape[1] == 32
    assert len(model.transformer.h) == 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_weights_depend_only_on_the_seed(family):
    first = tiny(family, seed=1)[0].state_dict()
    again = tiny(family, seed=1)[0].state_dict()
    other = tiny(family, seed=2)[0].state_dict()
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_the_callers_random_state_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    tiny("llama", seed=7)
    assert torch.equal(torch.rand(5), expected)


def test_common_words_are_single_tokens():
    tok = tiny_tokenizer()
    for word in SINGLE_TOKEN_WORDS:
        assert len(tok(word)["input_ids"]) == 1, (word, tok.tokenize(word))


def test_tokenizer_conventions():
    tok = tiny_tokenizer()
    assert tok.padding_side == "right"
    assert {tok.pad_token, tok.eos_token, tok.bos_token} == {"<|pad|>", "<|endoftext|>"}
    text = "The Eiffel Tower is located in the city of Paris"
    encoded = tok(text, return_offsets_mapping=True)
    assert encoded["input_ids"][0] != tok.bos_token_id  # no BOS added
    pieces = [text[start:end] for start, end in encoded["offset_mapping"]]
    assert "".join(pieces) == text
    assert pieces[-3:] == [" city", " of", " Paris"]
    assert tok.decode(encoded["input_ids"]) == text

    batch = tok([text, "I think"], padding=True)
    assert batch["input_ids"][1][-1] == tok.pad_token_id
    assert batch["attention_mask"][1] == [1, 1] + [0] * (len(batch["attention_mask"][0]) - 2)


def test_each_call_gets_its_own_tokenizer():
    first = tiny_tokenizer()
    first.padding_side = "left"
    assert tiny_tokenizer().padding_side == "right"
    assert tiny_tokenizer().get_vocab() == first.get_vocab()


def test_unknown_family_suggests_a_known_one():
    with pytest.raises(NbveneError) as caught:
        tiny("lama")
    message = str(caught.value)
    assert "unknown model family 'lama'" in message
    assert "did you mean 'llama'" in message
    assert "gpt_neox" in message  # the list of known families
