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
