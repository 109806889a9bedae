"""TransformerLens' names edit TransformerLens' tensors (issue 19, item 4), on eager and SDPA
models, with rows starting at their layer or not. The oracle: a plain forward hook on the module
TransformerLens 3.x's block reads or writes there (its `ln1`/`ln2` inputs for `hook_attn_in` /
`hook_mlp_in`; on Gemma 2 the post-norms' outputs for `hook_attn_out` / `hook_mlp_out`), adding
a vector at the last position. Adding (unlike patching from another prompt) tells a norm's input
from its output."""

from __future__ import annotations

import functools

import pytest
import torch

import nbvene as nv
from nbvene.errors import NbveneError

BASE = "The Colosseum is located in the city of"
METRIC = 'metric: logit_diff(" Paris", " Rome")'
LAYERS = 3
# (module inside block l, whether the vector goes into its input or its output)
ORACLE = {
    "gpt2": {
        "attn_in": ("transformer.h.{l}.ln_1", "input"),
        "mlp_in": ("transformer.h.{l}.ln_2", "input"),
        "attn_out": ("transformer.h.{l}.attn", "output"),
        "mlp_out": ("transformer.h.{l}.mlp", "output"),
    },
    "llama": {
        "attn_in": ("model.layers.{l}.input_layernorm", "input"),
        "mlp_in": ("model.layers.{l}.post_attention_layernorm", "input"),
        "attn_out": ("model.layers.{l}.self_attn", "output"),
        "mlp_out": ("model.layers.{l}.mlp", "output"),
    },
    "gemma": {
        "attn_in": ("model.layers.{l}.input_layernorm", "input"),
        "mlp_in": ("model.layers.{l}.post_attention_layernorm", "input"),
        "attn_out": ("model.layers.{l}.self_attn", "output"),
        "mlp_out": ("model.layers.{l}.mlp", "output"),
    },
    "gemma2": {
        "attn_in": ("model.layers.{l}.input_layernorm", "input"),
        "mlp_in": ("model.layers.{l}.pre_feedforward_layernorm", "input"),
        "attn_out": ("model.layers.{l}.post_attention_layernorm", "output"),
        "mlp_out": ("model.layers.{l}.post_feedforward_layernorm", "output"),
    },
    "gpt_neox": {
        "attn_in": ("gpt_neox.layers.{l}.input_layernorm", "input"),
        "mlp_in": ("gpt_neox.layers.{l}.post_attention_layernorm", "input"),
        "attn_out": ("gpt_neox.layers.{l}.attention", "output"),
        "mlp_out": ("gpt_neox.layers.{l}.mlp", "output"),
    },
}
HOOKS = {
    "attn_in": "hook_attn_in",
    "mlp_in": "hook_mlp_in",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
}


@functools.cache
def tiny(family: str, attention: str):
    model, tok = nv.models.tiny(family, seed=0, layers=LAYERS)
    if attention != "eager":
        try:
            model.set_attn_implementation(attention)
        except ValueError:  # Gemma 2 has no SDPA path in transformers
            pytest.skip(f"{family} has no {attention} attention")
    return model, tok


def oracle(model, tok, module: str, io: str, vector: torch.Tensor) -> float:
    """The metric with `vector` added at the last position of the module's input or output."""

    def add(x):
        x = x.clone()
        x[:, -1] += vector
        return x

    target = model.get_submodule(module)
    if io == "input":
        handle = target.register_forward_pre_hook(
            lambda _m, args, kwargs: (
                ((add(args[0]), *args[1:]), kwargs)
                if args
                else (args, {**kwargs, "hidden_states": add(kwargs["hidden_states"])})
            ),
            with_kwargs=True,
        )
    else:
        handle = target.register_forward_hook(
            lambda _m, _args, out: (add(out[0]), *out[1:]) if isinstance(out, tuple) else add(out)
        )
    try:
        with torch.no_grad():
            logits = model(**tok(BASE, return_tensors="pt")).logits
    finally:
        handle.remove()
    paris, rome = (tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " Rome"))
    return float(logits[0, -1, paris] - logits[0, -1, rome])


@pytest.mark.parametrize("start_at_layer", [True, False])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", list(ORACLE))
def test_adding_at_a_transformerlens_name_adds_at_transformerlens_tensor(
    family, attention, start_at_layer
):
    model, tok = tiny(family, attention)
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3)) * 5
    for short, (module, io) in ORACLE[family].items():
        expected = torch.tensor(
            [oracle(model, tok, module.format(l=layer), io, vector) for layer in range(LAYERS)]
        )
        for written in (f"{short} layer=*", f"blocks.{{l}}.{HOOKS[short]}"):
            if "{l}" in written:
                got = torch.stack(
                    [
                        _add(model, tok, written.format(l=layer), vector, start_at_layer)
                        for layer in range(LAYERS)
                    ]
                )
            else:
                got = _add(model, tok, written, vector, start_at_layer)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=written)


def _add(model, tok, written: str, vector, start_at_layer: bool) -> torch.Tensor:
    spec = f'base: "{BASE}"\nadd: {written} pos=-1 by {{v}}\n{METRIC}'
    return nv.run(
        spec, model=model, tokenizer=tok, namespace={"v": vector}, start_at_layer=start_at_layer
    ).values


def test_attn_in_and_mlp_in_are_not_the_norms_outputs():
    """What these names meant in nbvene before: the norm's output, another tensor."""
    model, tok = tiny("llama", "eager")
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3)) * 5
    for short, post_norm in (("attn_in", "attention_input"), ("mlp_in", "mlp_input")):
        ours = _add(model, tok, f"{short} layer=1", vector, True)
        other = _add(model, tok, f"{post_norm} layer=1", vector, True)
        assert (ours - other).abs() > 1e-4


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("blocks.1.ln1.hook_normalized", "before the norm's gain and bias"),
        ("blocks.0.ln2.hook_normalized", "mlp_input is the norm's output"),
        ("blocks.1.attn.hook_attn_scores", "patch pattern"),
        ("blocks.1.attn.hook_result", "patch z"),
        ("blocks.0.mlp.hook_pre", "gate_proj.output"),
    ],
)
def test_transformerlens_hooks_without_an_equivalent_say_so(written, says):
    model, tok = tiny("llama", "eager")
    with pytest.raises(NbveneError, match="TransformerLens hook with no equivalent") as e:
        nv.plan(f'base: "{BASE}"\ncollect: {written} pos=-1', model=model, tokenizer=tok)
    assert says in str(e.value)


@pytest.mark.parametrize("family", ["gptj", "bert"])
def test_attn_in_where_no_norm_feeds_the_attention_alone_is_refused(family):
    model, tok = nv.models.tiny(family, seed=0)
    base = f"{BASE} [MASK]." if family == "bert" else BASE
    for written in ("attn_in layer=0", "blocks.0.hook_mlp_in"):
        with pytest.raises(NbveneError, match="not available") as e:
            nv.plan(f'base: "{base}"\ncollect: {written} pos=-1', model=model, tokenizer=tok)
        assert "TransformerLens'" in str(e.value)


def test_on_bert_the_names_mean_what_transformerlens_hookedencoder_means():
    """HookedEncoder's hook_attn_out / hook_mlp_out are the sublayers' dense projections, before
    the residual sum and the post-norm; its hook_resid_mid / hook_resid_post are that sum, which
    no module outputs, so nbvene refuses them (its resid_mid and block_output are normed)."""
    model, tok = nv.models.tiny("bert", seed=0)
    base = f"{BASE} [MASK]."
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    ids = tok(base, return_tensors="pt")
    for short, module in (("attn_out", "attention.output.dense"), ("mlp_out", "output.dense")):
        target = model.get_submodule(f"bert.encoder.layer.0.{module}")
        handle = target.register_forward_hook(lambda _m, _a, out: out + vector)
        try:
            with torch.no_grad():
                expected = model(**ids, output_hidden_states=True).hidden_states[-1][0]
        finally:
            handle.remove()
        spec = f'base: "{base}"\nadd: {short} layer=0 by {{v}}\n'
        spec += "collect: block_output layer=1 pos=*"
        got = nv.run(spec, model=model, tokenizer=tok, namespace={"v": vector}).values
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=short)
    for written in ("blocks.0.hook_resid_mid", "blocks.1.hook_resid_post", "resid_post layer=0"):
        with pytest.raises(NbveneError, match="no equivalent on this model"):
            nv.plan(f'base: "{base}"\ncollect: {written} pos=-1', model=model, tokenizer=tok)
    nv.plan(f'base: "{base}"\ncollect: resid_mid layer=0 pos=-1', model=model, tokenizer=tok)
