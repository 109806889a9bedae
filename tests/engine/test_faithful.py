"""The field's definitions, whatever the shortcut: rows that start at their patched layer give
the values of full forward passes, on eager and SDPA attention."""

import pytest
import torch

import nbvene as nv

BASES = ["The Colosseum is located in the city of", "The Louvre is in"]
SOURCES = ["The Eiffel Tower is located in the city of", "The Tate is in"]
FAMILIES = ["llama", "gpt2", "gemma", "gemma2", "gpt_neox", "phi3"]


def tiny(family, attention="eager", **overrides):
    model, tok = nv.models.tiny(family, layers=3, **overrides)
    if attention != "eager":
        try:
            model.set_attn_implementation(attention)
        except ValueError:  # Gemma 2 has no SDPA path in transformers
            pytest.skip(f"{family} has no {attention} attention")
    return model, tok


def sweep(model, tok, body, **options):
    spec = f'base: {BASES}\nsource: {SOURCES}\n{body}\nmetric: logit_diff(" Paris", " Rome")'
    spec = spec.replace("'", '"')
    return nv.run(spec, model=model, tokenizer=tok, progress=lambda done, total: None,
                  **options).values  # fmt: skip


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_patched_attention_weights_start_at_their_layer_faithfully(family, attention):
    """Rows patched at layer l > 0 reuse the baseline's block inputs (mask included): they must
    see the causal and padding mask the full forward pass builds. The oracle: the eager model,
    full forward passes."""
    eager, tok = tiny(family)
    expected = sweep(eager, tok, "patch: pattern layer=* head=*", start_at_layer=False)
    model, _ = tiny(family, attention)
    # 8 rows a pass: one layer's heads for both examples, so passes above layer 0 start there
    got = sweep(model, tok, "patch: pattern layer=* head=*", max_batch=8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    full = sweep(model, tok, "patch: pattern layer=* head=*", start_at_layer=False)
    torch.testing.assert_close(full, expected, atol=1e-5, rtol=0)
    assert model.config._attn_implementation == attention


CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = 'corrupt: noise 3σ on "Eiffel Tower" samples=2\n'
EMBEDDINGS = {
    "llama": "model.embed_tokens",
    "gpt2": "transformer.wte",  # its block 0 adds the position embeddings (transformer.wpe)
    "gemma": "model.embed_tokens",
    "gemma2": "model.embed_tokens",
    "gpt_neox": "gpt_neox.embed_in",
}


def run(model, tok, body, **options):
    spec = f'base: "{CLEAN}"\n{body}'
    return nv.run(spec, model=model, tokenizer=tok, progress=lambda done, total: None, **options)


@pytest.mark.parametrize("family", list(EMBEDDINGS))
def test_restoring_the_embeddings_output_under_noise_restores(family):
    """`restore:` at the embedding module's output sees the noised embeddings and puts the
    clean ones back: the same values as at block 0's input (the same tensor, or for GPT-2 the
    same tensor plus the position embeddings)."""
    model, tok = tiny(family)
    metric = '\nmetric: logit_diff(" Paris", " Rome")'
    oracle = run(model, tok, CORRUPT + "restore: block_input layer=0 pos=*" + metric)
    for start_at_layer in (True, False):
        embeds = f"restore: {EMBEDDINGS[family]}.output pos=*"
        got = run(model, tok, CORRUPT + embeds + metric, start_at_layer=start_at_layer)
        torch.testing.assert_close(got.values, oracle.values, atol=1e-5, rtol=0)
    # restoring the subject's tokens changes the corrupted run
    assert (oracle.values - oracle.corrupted).abs().max() > 0


@pytest.mark.parametrize("family", list(EMBEDDINGS))
def test_collecting_the_embeddings_output_under_noise_sees_the_noise(family):
    model, tok = tiny(family)
    embeds = run(model, tok, CORRUPT + f"collect: {EMBEDDINGS[family]}.output pos=*").values
    block = run(model, tok, CORRUPT + "collect: block_input layer=0 pos=*").values
    if family == "gpt2":
        block = block - model.transformer.wpe.weight[: block.shape[-2]].detach()
    torch.testing.assert_close(embeds, block, atol=1e-6, rtol=0)
    clean = run(model, tok, f"collect: {EMBEDDINGS[family]}.output pos=*").values
    subject = torch.tensor([len(t) > 0 for t in _subject_mask(tok)])
    assert (embeds - clean)[subject].abs().amin(dim=-1).gt(0).all(), "the subject is noised"
    torch.testing.assert_close(embeds[~subject], clean[~subject], atol=0, rtol=0)


def _subject_mask(tok):
    """Per token of CLEAN: its text if it overlaps "Eiffel Tower", else ""."""
    enc = tok(CLEAN, return_offsets_mapping=True)
    start = CLEAN.index("Eiffel Tower")
    end = start + len("Eiffel Tower")
    return [CLEAN[a:b] if a < end and b > start and b > a else "" for a, b in enc.offset_mapping]
