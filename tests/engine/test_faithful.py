"""The field's definitions, whatever the shortcut: rows that start at their patched layer give
the values of full forward passes (eager and SDPA attention, every block its own mask), and
ROME's noise is added first, sized by σ where it is added."""

import pytest
import torch

import nbvene as nv

BASES = ["The Colosseum is located in the city of", "The Louvre is in"]
SOURCES = ["The Eiffel Tower is located in the city of", "The Tate is in"]
FAMILIES = ["llama", "gpt2", "gemma", "gemma2", "gpt_neox", "phi3"]


def tiny(family, attention="eager", **overrides):
    if family == "gemma3":
        model, tok = gemma3(**overrides)
    else:
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
    return nv.run(
        spec, model=model, tokenizer=tok, progress=lambda done, total: None, **options
    ).values


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


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_patched_attention_weights_in_chunks_of_shorter_prompts(family):
    """A chunk is padded to its own longest prompt: a source attention row (as wide as the
    longest source) is cut to it, the keys past the prompt's end having weight 0."""
    model, tok = tiny(family)
    expected = sweep(model, tok, "patch: pattern layer=* head=*", start_at_layer=False)
    for max_batch in (1, 3):
        for start_at_layer in (True, False):
            got = sweep(
                model,
                tok,
                "patch: pattern layer=* head=*",
                max_batch=max_batch,
                start_at_layer=start_at_layer,
            )
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = 'corrupt: noise 3σ on "Eiffel Tower" samples=2\n'
EMBEDDINGS = {
    "llama": "model.embed_tokens",
    "gpt2": "transformer.wte",  # its block 0 adds the position embeddings (transformer.wpe)
    "gemma": "model.embed_tokens",
    "gemma2": "model.embed_tokens",
    "gemma3": "model.embed_tokens",
    "gpt_neox": "gpt_neox.embed_in",
}


def run(model, tok, body, **options):
    spec = f'base: "{CLEAN}"\n{body}'
    return nv.run(spec, model=model, tokenizer=tok, progress=lambda done, total: None, **options)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", list(EMBEDDINGS))
def test_restoring_the_embeddings_output_under_noise_restores(family, attention):
    """`restore:` at the embedding module's output sees the noised embeddings and puts the
    clean ones back: the same values as at block 0's input (the same tensor, or for GPT-2 the
    same tensor plus the position embeddings)."""
    model, tok = tiny(family, attention)
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


def gemma3(**overrides):
    """A tiny Gemma 3 (text), which `nv.models.tiny` does not build: the Gemma tokenizer and
    the same sizes."""
    from transformers import AutoConfig, AutoModelForCausalLM

    _, tok = nv.models.tiny("gemma")
    config = AutoConfig.for_model(
        "gemma3_text",
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        num_hidden_layers=3,
        vocab_size=len(tok),
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        **overrides,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval(), tok


@pytest.mark.parametrize("family", list(EMBEDDINGS))
def test_noise_sigma_is_measured_where_the_noise_is_added(family):
    """`noise 3σ`: σ is the std of what the embedding module outputs (Gemma's scales by
    √d_model), and exactly 3σ × the seeded draws is added to the subject's embeddings."""
    model, tok = tiny(family)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        consumed = embed(torch.arange(embed.weight.shape[0])[None])[0].float()
    sigma = float(consumed.std())
    if family.startswith("gemma"):  # the oracle's oracle: the weight, scaled as Gemma does
        d = embed.weight.shape[1]
        assert sigma == pytest.approx(float(embed.weight.detach().std()) * d**0.5, rel=1e-5)

    corrupt = 'corrupt: noise 3σ on "Eiffel Tower" seed=5\n'
    plan = nv.plan(
        f'base: "{CLEAN}"\n{corrupt}collect: block_input layer=0 pos=*', model=model, tokenizer=tok
    )
    assert plan.corrupt.std == pytest.approx(3 * sigma, rel=1e-5)
    assert f"σ = {sigma:.4g}" in plan.describe()

    site = f"{EMBEDDINGS[family]}.output pos=*"
    noised = run(model, tok, corrupt + f"collect: {site}").values
    clean = run(model, tok, f"collect: {site}").values
    subject = [i for i, text in enumerate(_subject_mask(tok)) if text]
    draws = torch.randn(
        (len(subject), consumed.shape[1]), generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(
        noised[subject] - clean[subject], 3 * sigma * draws, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
@pytest.mark.parametrize("body", ["patch: block_output layer=* pos=3", "patch: pattern layer=*"])
def test_rows_starting_at_their_layer_get_each_blocks_own_mask(family, body):
    """Gemma 2/3 alternate sliding-window and full attention, each with its own mask: a row
    that starts at a full-attention layer must still give the sliding layers above it theirs.
    A 4-token window on an 11-token prompt makes the two masks differ."""
    types = ["sliding_attention", "full_attention", "sliding_attention"]
    model, tok = tiny(family, sliding_window=4, layer_types=types)
    assert model.config.layer_types == types
    assert len(tok(CLEAN).input_ids) == len(tok(BASES[0]).input_ids) > 4
    spec = f'source: "{BASES[0]}"\n{body}\nmetric: logit_diff(" Paris", " Rome")'
    full = run(model, tok, spec, start_at_layer=False)
    got = run(model, tok, spec, max_batch=1)
    torch.testing.assert_close(got.values, full.values, atol=1e-5, rtol=0)
    assert (full.values - full.corrupted).abs().max() > 1e-3, "the patch changes the output"
