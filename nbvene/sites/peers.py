"""The same tensor under the other libraries' names: for each site of a model, the pyvene 0.1.8
component, the TransformerLens 3.x hook and the nnsight module path that give it.

>>> [d for d in definitions(gpt2) if d.component == "attn_in"]
[Definition(component='attn_in', pyvene=None, transformerlens='blocks.{l}.hook_attn_in',
            nnsight='transformer.h[{l}].ln_1.input')]

The tests in tests/peers/ check every equality these rows claim on tensors, against the
libraries themselves where they are installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nbvene.sites.families import Part
from nbvene.sites.map import SiteMap
from nbvene.sites.names import TRANSFORMERLENS

_RESIDUAL_ONLY = {"resid_mid", "attention_weight"}
_HEADS = {
    "head_attention_value_output",
    "head_query_output",
    "head_key_output",
    "head_value_output",
}
_QKV = {"query_output", "key_output", "value_output"}
_GATED = {"llama", "mistral", "qwen2", "gemma", "gemma2", "olmo"}
# pyvene 0.1.8's model types, and the components of nbvene's vocabulary it maps to the same
# tensor (read from pyvene/models/*/modelings_intervenable_*.py). Llama-style `mlp_activation`
# is the output of `mlp.act_fn` there, before the product with `up_proj`; GPT-2's
# `attention_weight` hooks `attn_dropout`, which transformers 5 calls only with
# `reorder_and_upcast_attn`; GPT-Neo's attention paths (`attn.q_proj`) name no module.
_PYVENE_TYPES = {"gpt2", "gpt_neox", "gpt_neo", *_GATED}
_PYVENE_LACKS = {
    "gpt2": _RESIDUAL_ONLY,
    **{t: _RESIDUAL_ONLY | {"mlp_activation"} for t in _GATED},
    # pyvene fails on these: it reads `config.head_dim`, which Qwen 2 configs lack, and
    # `config.hhead_dim` (sic) for Gemma's head_value_output.
    "qwen2": _RESIDUAL_ONLY | {"mlp_activation"} | _HEADS,
    "gemma": _RESIDUAL_ONLY | {"mlp_activation", "head_value_output"},
    "gpt_neox": _RESIDUAL_ONLY | _QKV | (_HEADS - {"head_attention_value_output"}),
    "gpt_neo": _RESIDUAL_ONLY | _QKV | _HEADS | {"attention_value_output"},
}


@dataclass(frozen=True)
class Definition:
    """One tensor by four libraries' names; `{l}` stands for the layer, None for no name. A
    name may end in "; " and a note on how to read it (`split into 4 heads`)."""

    component: str
    pyvene: str | None
    transformerlens: str | None
    nnsight: str | None


def definitions(model: nn.Module) -> list[Definition]:
    """The cross-library names of every site of `model` (a `transformers` model nbvene knows)."""
    sites = SiteMap(model)
    model_type = model.config.model_type
    tuples, flat = _probe(model, sites)
    rows = []
    names = {**sites.parts, **{k: p for k, p in sites.transformerlens.items() if p is not None}}
    for name, part in names.items():
        tl = _transformerlens(sites, name)
        pyvene = name if _pyvene_has(model_type, name, sites) else None
        nnsight = _nnsight(sites.family.blocks, part, tuples, flat)
        rows.append(Definition(name, pyvene, tl, nnsight))
    return rows


def definition_table(models: dict[str, nn.Module]) -> str:
    """Markdown: one table per group of families whose rows are the same (docs/sites.md)."""
    groups: list[tuple[list[str], list[Definition]]] = []
    for family, model in models.items():
        rows = definitions(model)
        for names, seen in groups:
            if seen == rows:
                names.append(family)
                break
        else:
            groups.append(([family], rows))
    out = []
    for names, rows in groups:
        out.append("### " + ", ".join(f"`{n}`" for n in names) + "\n")
        out.append("| nbvene | pyvene 0.1.8 | TransformerLens 3.x | nnsight 0.8 (`lm.` + path) |")
        out.append("| --- | --- | --- | --- |")
        for d in rows:
            cells = [d.component, d.pyvene, d.transformerlens, d.nnsight]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _cell(name: str | None) -> str:
    if name is None:
        return "–"
    code, _, note = name.partition("; ")
    return f"`{code}`" + (f" ({note})" if note else "")


def _transformerlens(sites: SiteMap, name: str) -> str | None:
    """The TransformerLens hook with `name`'s tensor here (heads flattened for whole views)."""
    if name == "attn_in" and sites.shape.kv_heads != sites.shape.heads:
        return None  # TransformerLens refuses use_attn_in with grouped-query attention
    for short, (hook, canonical) in TRANSFORMERLENS.items():
        if name == short and sites.transformerlens.get(short) is not None:
            return f"blocks.{{l}}.{hook}"
        if canonical == name and short not in sites.transformerlens:
            return f"blocks.{{l}}.{hook}"
    flat = {
        "query_output": "attn.hook_q",
        "key_output": "attn.hook_k",
        "value_output": "attn.hook_v",
        "attention_value_output": "attn.hook_z",
    }
    return f"blocks.{{l}}.{flat[name]}; heads flattened" if name in flat else None


def _pyvene_has(model_type: str, name: str, sites: SiteMap) -> bool:
    if model_type not in _PYVENE_TYPES or name not in sites.parts:
        return False
    return name not in _PYVENE_LACKS[model_type]


def _nnsight(blocks: str, part: Part, tuples: set[str], flat: set[tuple[str, str]]) -> str | None:
    """The nnsight expression for a part: `.input`, `.output` (`[0]` of a tuple), the view."""
    if {"input", "output"} & set(part.path.split(".")):
        return None  # BERT's child module named `output`: nnsight's `.output` shadows it
    block = f"{blocks}[{{l}}]"
    module = f"{block}.{part.path}" if part.path else block
    probed = f"{blocks}.0.{part.path}".rstrip(".")
    first = "[0]" if probed in tuples else ""
    if (probed, part.io) in flat:  # OPT's MLP: (batch · positions, d)
        return f"{module}.{part.io}; batch and positions flattened into one dimension"
    if part.io == "residual":
        return f"{module}.output{first} + {block}.input"
    if part.io == "weights":
        return f"{module}.output[1]; eager attention, read only"
    text = f"{module}.{part.io}{first if part.io == 'output' else ''}"
    view = part.view
    if view.sliced:
        text += f"[..., {view.start}:{view.stop}]"
    if view.fused > 1:
        shape = f"({view.heads} heads, {view.fused}, head_dim)"
        flat = "" if view.by_head else ", flattened"
        return f"{text}; the last dimension as {shape}, part {view.part}{flat}"
    return f"{text}; split into {view.heads} heads" if view.by_head else text


def _probe(model: nn.Module, sites: SiteMap) -> tuple[set[str], set[tuple[str, str]]]:
    """Which modules of block 0 return a tuple (nnsight then needs `.output[0]`), and which see
    (module, "input" or "output") with batch and positions flattened into one dimension: one
    forward of two tokens with hooks that only look."""
    seen: set[str] = set()
    flat: set[tuple[str, str]] = set()
    handles = []
    block = f"{sites.family.blocks}.0"
    for name, module in model.named_modules():
        if name == block or name.startswith(block + "."):

            def look(_m, args, output, name=name):
                if isinstance(output, tuple):
                    seen.add(name)
                first = output[0] if isinstance(output, tuple) else output
                for io, tensor in (("input", args[0] if args else None), ("output", first)):
                    if isinstance(tensor, torch.Tensor) and tensor.dim() == 2:
                        flat.add((name, io))

            handles.append(module.register_forward_hook(look))
    try:
        with torch.no_grad():
            model(input_ids=torch.zeros((1, 2), dtype=torch.long))
    finally:
        for handle in handles:
            handle.remove()
    return seen, flat
