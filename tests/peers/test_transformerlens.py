"""nbvene against TransformerLens 3.x itself: its `patching` sweeps and its hooks give what the
equivalent nbvene specs and components give, on tiny GPT-2, Llama (GQA) and GPT-NeoX models
loaded into a `HookedTransformer` without weight processing (no folded norms, no centred
weights, no folded value biases) and without the hub: from the model's config and weights."""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch

import nbvene as nv
from nbvene.sites.peers import definitions

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    tl = pytest.importorskip("transformer_lens")
    from transformer_lens import HookedTransformer, patching
    from transformer_lens.loading_from_pretrained import (
        get_pretrained_model_config,
        get_pretrained_state_dict,
    )

BASE = "The Colosseum is located in the city of"  # TransformerLens' corrupted prompt
SOURCE = "The Eiffel Tower is located in the city of"  # its clean prompt
METRIC = 'metric: logit_diff(" Paris", " Rome")'
FAMILIES = ["gpt2", "llama", "gpt_neox"]
ATOL = 1e-4


@functools.cache
def models(family: str):
    """The tiny `transformers` model, its tokenizer, and the same weights as a HookedTransformer."""
    model, tok = nv.models.tiny(family, seed=0, attn_implementation="eager")
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    config.n_ctx = getattr(config, "n_positions", None)  # TransformerLens reads GPT-2's n_ctx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="tiny") as folder:
            config.save_pretrained(folder)  # a local folder: TransformerLens reads no hub name
            cfg = get_pretrained_model_config(
                folder, hf_cfg=config.to_dict(), device="cpu", default_prepend_bos=False
            )
            cfg.tokenizer_name = None  # tokens are passed in as ids
            if family == "gpt2":  # TransformerLens assumes GPT-2's MLP is 4 × d_model wide
                cfg.d_mlp = model.config.n_inner
            state = get_pretrained_state_dict(folder, cfg, hf_model=model)
        hooked = HookedTransformer(cfg, move_to_device=False)
        hooked.load_and_process_state_dict(
            state,
            fold_ln=False,
            center_writing_weights=False,
            center_unembed=False,
            fold_value_biases=False,
        )
    if hooked.cfg.n_key_value_heads is None:  # TransformerLens has no attn_in with GQA
        hooked.set_use_attn_in(True)
    hooked.set_use_hook_mlp_in(True)
    return model, tok, hooked.eval()


@functools.cache
def sdpa(family: str):
    """The same weights with transformers' default attention (SDPA)."""
    model, _ = nv.models.tiny(family, seed=0)
    model.set_attn_implementation("sdpa")
    return model


def tokens(tok, text: str) -> torch.Tensor:
    return tok(text, return_tensors="pt")["input_ids"]


def logit_diff(tok):
    paris, rome = (tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " Rome"))
    return lambda logits: logits[0, -1, paris] - logits[0, -1, rome]


def run(model, tok, body: str, **options):
    spec = f'base: "{BASE}"\nsource: "{SOURCE}"\n{body}\n{METRIC}'
    return nv.run(spec, model=model, tokenizer=tok, progress=lambda done, total: None, **options)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_hooked_transformer_is_the_same_model(family):
    model, tok, hooked = models(family)
    ids = tokens(tok, BASE)
    with torch.no_grad():
        torch.testing.assert_close(hooked(ids), model(ids).logits, atol=1e-5, rtol=0)


SWEEPS = {  # transformer_lens.patching function → the nbvene spec line (docs/spec.md)
    "get_act_patch_resid_pre": "patch: resid_pre layer=* pos=*",
    "get_act_patch_attn_out": "patch: attn_out layer=* pos=*",
    "get_act_patch_mlp_out": "patch: mlp_out layer=* pos=*",
    "get_act_patch_attn_head_out_by_pos": "patch: z layer=* pos=* head=*",
    "get_act_patch_attn_head_pattern_all_pos": "patch: pattern layer=* head=*",
}
# nbvene's side: transformers' default SDPA attention with rows starting at their layer (the
# default), and the eager model with full forward passes.
RUNS = {"sdpa": {"start_at_layer": True}, "eager": {"start_at_layer": False}}


@pytest.mark.parametrize("attention", list(RUNS))
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_patching_sweeps_equal_the_nbvene_specs(family, sweep, attention):
    model, tok, hooked = models(family)
    model = sdpa(family) if attention == "sdpa" else model
    with torch.no_grad():
        _, clean_cache = hooked.run_with_cache(tokens(tok, SOURCE))
        theirs = getattr(patching, sweep)(hooked, tokens(tok, BASE), clean_cache, logit_diff(tok))
    ours = run(model, tok, SWEEPS[sweep], **RUNS[attention])
    assert ours.values.shape == theirs.shape
    torch.testing.assert_close(ours.values.float(), theirs.float(), atol=ATOL, rtol=0)
    assert theirs.abs().max() > 1e-3, "the sweep moves the metric"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("short", ["attn_in", "mlp_in"])
def test_patching_attn_in_and_mlp_in_patches_what_transformerlens_patches(family, short):
    """TransformerLens' hook_attn_in / hook_mlp_in are the residual stream before ln1 / ln2,
    feeding that branch alone: patching them is not patching the norm's output."""
    model, tok, hooked = models(family)
    if short == "attn_in" and hooked.cfg.n_key_value_heads is not None:
        pytest.skip("TransformerLens has no hook_attn_in on grouped-query attention models")
    hook = {"attn_in": "hook_attn_in", "mlp_in": "hook_mlp_in"}[short]
    with torch.no_grad():
        _, clean_cache = hooked.run_with_cache(tokens(tok, SOURCE))
        theirs = patching.generic_activation_patch(
            hooked,
            tokens(tok, BASE),
            clean_cache,
            logit_diff(tok),
            patch_setter=patching.layer_pos_patch_setter,
            activation_name=short,
            index_axis_names=("layer", "pos"),
        )
    for written in (f"{short} layer=*", f"blocks.{{l}}.{hook}"):
        if "{l}" in written:
            layers = [
                run(model, tok, f"patch: {written.format(l=layer)} pos=*").values
                for layer in range(hooked.cfg.n_layers)
            ]
            ours = torch.stack(layers)
        else:
            ours = run(model, tok, f"patch: {written} pos=*").values
        torch.testing.assert_close(ours.float(), theirs.float(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("short", ["attn_in", "mlp_in"])
def test_adding_at_attn_in_and_mlp_in_adds_where_transformerlens_adds(family, short):
    """Patching a norm's input or its output is the same (the norm works per position), adding a
    vector is not: `add: mlp_in` must equal adding at TransformerLens' hook_mlp_in, and differ
    from adding after the norm (what these names meant in nbvene before)."""
    model, tok, hooked = models(family)
    if short == "attn_in" and hooked.cfg.n_key_value_heads is None:
        hooks_at = "hook_attn_in"
    elif short == "mlp_in":
        hooks_at = "hook_mlp_in"
    else:
        pytest.skip("TransformerLens has no hook_attn_in on grouped-query attention models")
    vector = torch.randn(hooked.cfg.d_model, generator=torch.Generator().manual_seed(1)) * 10

    def add(activation, hook):
        activation[:, -1] += vector  # hook_attn_in: every head's copy
        return activation

    with torch.no_grad():
        logits = hooked.run_with_hooks(tokens(tok, BASE), fwd_hooks=[(f"blocks.1.{hooks_at}", add)])
    theirs = logit_diff(tok)(logits)
    spec = f'base: "{BASE}"\nadd: {{}} layer=1 pos=-1 by {{{{v}}}}\n{METRIC}'
    ours = nv.run(spec.format(short), model=model, tokenizer=tok, namespace={"v": vector})
    torch.testing.assert_close(ours.values.float(), theirs.float(), atol=ATOL, rtol=0)
    post_norm = "attention_input" if short == "attn_in" else "mlp_input"
    other = nv.run(spec.format(post_norm), model=model, tokenizer=tok, namespace={"v": vector})
    assert (other.values - theirs).abs() > 1e-4, "after the norm is another tensor"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_hook_in_the_definition_table_holds_the_components_tensor(family):
    """Every row of docs/sites.md's table with a TransformerLens hook: the hook's activation at
    every layer equals what nbvene collects at the component."""
    model, tok, hooked = models(family)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(tokens(tok, BASE))
    checked = 0
    for row in definitions(model):
        if row.transformerlens is None:
            continue
        hook, _, note = row.transformerlens.partition("; ")
        heads = "" if row.component in ("attn_in", "mlp_in") else _heads(model, row.component)
        spec = f'base: "{BASE}"\ncollect: {row.component} layer=* pos=*{heads}'
        ours = nv.run(spec, model=model, tokenizer=tok).values
        for layer in range(hooked.cfg.n_layers):
            theirs = cache[hook.format(l=layer)][0]
            if hook.endswith("hook_attn_in"):  # TransformerLens repeats it per head
                theirs = theirs[:, 0]
            elif hook.endswith("hook_pattern"):  # (head, query, key) → nbvene's (query, head, key)
                theirs = theirs.transpose(0, 1)
            if note == "heads flattened":
                theirs = theirs.flatten(-2)
            torch.testing.assert_close(ours[layer], theirs, atol=1e-5, rtol=0, msg=row.component)
        checked += 1
    assert checked >= 15


def _heads(model, component: str) -> str:
    sites = nv.SiteMap(model)
    return " head=*" if sites.heads(sites.resolve(component)) is not None else ""
