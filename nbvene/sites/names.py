"""Component names: pyvene's vocabulary, TransformerLens' short and hook names (each meaning the
tensor it means in TransformerLens 3.x), raw module paths."""

from __future__ import annotations

import re
from dataclasses import dataclass

COMPONENTS = (
    "block_input",
    "block_output",
    "resid_mid",
    "mlp_input",
    "mlp_output",
    "mlp_activation",
    "attention_input",
    "attention_output",
    "attention_value_output",
    "head_attention_value_output",
    "query_output",
    "key_output",
    "value_output",
    "head_query_output",
    "head_key_output",
    "head_value_output",
    "attention_weight",
)

# TransformerLens' hooks inside `blocks.{l}`, by the short name its `get_act_name` takes, with the
# nbvene component that holds the same tensor on most families (`Family.transformerlens` names
# the exceptions: Gemma 2's post-normed `attn_out`, BERT's). None: no component does; `attn_in`
# and `mlp_in` are the residual stream as the attention's and the MLP's norms read it (a copy:
# editing it changes that branch only), which each family's adapter places. TL's `hook_attn_in`
# repeats the copy per head; nbvene's `attn_in` is the copy every head reads.
TRANSFORMERLENS = {
    "resid_pre": ("hook_resid_pre", "block_input"),
    "resid_mid": ("hook_resid_mid", "resid_mid"),
    "resid_post": ("hook_resid_post", "block_output"),
    "attn_in": ("hook_attn_in", None),
    "attn_out": ("hook_attn_out", "attention_output"),
    "mlp_in": ("hook_mlp_in", None),
    "mlp_out": ("hook_mlp_out", "mlp_output"),
    "post": ("mlp.hook_post", "mlp_activation"),
    "q": ("attn.hook_q", "head_query_output"),
    "k": ("attn.hook_k", "head_key_output"),
    "v": ("attn.hook_v", "head_value_output"),
    "z": ("attn.hook_z", "head_attention_value_output"),
    "pattern": ("attn.hook_pattern", "attention_weight"),
}
TRANSFORMERLENS_ONLY = tuple(short for short, (_, c) in TRANSFORMERLENS.items() if c is None)

ALIASES = {
    **{short: c for short, (_, c) in TRANSFORMERLENS.items() if c not in (None, short)},
    "mlp_post": "mlp_activation",
}

_HOOKS = {hook: c or short for short, (hook, c) in TRANSFORMERLENS.items()}
_SHORT = {hook: short for short, (hook, _) in TRANSFORMERLENS.items()}

# TransformerLens hooks inside a block that no nbvene name reaches, and why.
NO_EQUIVALENT = {
    "ln1.hook_normalized": (
        "TransformerLens' hook_normalized is the normalised input before the norm's gain and "
        "bias, which no module of a transformers model outputs; attention_input is the norm's "
        "output (with gain and bias), attn_in its input"
    ),
    "ln2.hook_normalized": (
        "TransformerLens' hook_normalized is the normalised input before the norm's gain and "
        "bias, which no module of a transformers model outputs; mlp_input is the norm's "
        "output (with gain and bias), mlp_in its input"
    ),
    "ln1.hook_scale": "the norm's scale is computed inside the norm module; no hook reaches it",
    "ln2.hook_scale": "the norm's scale is computed inside the norm module; no hook reaches it",
    "attn.hook_attn_scores": (
        "the scores before the softmax are computed inside transformers' attention function; "
        "patch pattern (the probabilities) instead"
    ),
    "attn.hook_result": (
        "transformers' output projection sums the heads in one matmul, so per-head outputs are "
        "never formed; patch z (head_attention_value_output), which gives the same effect"
    ),
    "attn.hook_rot_q": "the rotated queries are formed inside the attention module",
    "attn.hook_rot_k": "the rotated keys are formed inside the attention module",
    "hook_q_input": "per-head copies of the attention's input exist only in TransformerLens",
    "hook_k_input": "per-head copies of the attention's input exist only in TransformerLens",
    "hook_v_input": "per-head copies of the attention's input exist only in TransformerLens",
    "mlp.hook_pre": (
        "use the output of the MLP's input projection as a raw path "
        "(transformer.h[3].mlp.c_fc.output on GPT-2, model.layers[3].mlp.gate_proj.output on "
        "Llama)"
    ),
}
_HOOK_NAME = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(h) for h in _HOOKS) + r")$")
_OTHER_HOOK = re.compile(r"^blocks\.\d+\.(?P<hook>.+)$")
_RAW_PATH = re.compile(r"^(?P<module>[A-Za-z_][\w.\[\]]*)\.(?P<io>input|output)$")

HEAD_COMPONENTS = frozenset(c for c in COMPONENTS if c.startswith("head_"))


@dataclass(frozen=True)
class Component:
    """A component as written, resolved to a canonical name or a raw module path."""

    name: str
    layer: int | None = None
    module: str | None = None
    io: str | None = None

    @property
    def raw(self) -> bool:
        return self.module is not None


def component(written: str) -> Component | None:
    """What a written component means, or None when it is no known name nor module path."""
    if written in COMPONENTS:
        return Component(written)
    if written in ALIASES:
        return Component(ALIASES[written])
    if written in TRANSFORMERLENS_ONLY:
        return Component(written)
    m = _HOOK_NAME.match(written)
    if m:
        return Component(_HOOKS[m.group(2)], layer=int(m.group(1)))
    m = _RAW_PATH.match(written)
    if m:
        module = re.sub(r"\[(\d+)\]", r".\1", m.group("module"))
        return Component(written, module=module, io=m.group("io"))
    return None


def transformerlens_name(written: str) -> tuple[str, int | None] | None:
    """The TransformerLens short name (`attn_out`) and layer a written name means, if it is one
    of TransformerLens' names: a short name or alias (`mlp_post`), or a hook name."""
    if written == "mlp_post":
        return "post", None
    if written in TRANSFORMERLENS:
        return written, None
    m = _HOOK_NAME.match(written)
    if m:
        return _SHORT[m.group(2)], int(m.group(1))
    return None


def no_equivalent(written: str) -> str | None:
    """Why a TransformerLens hook name (`blocks.3.ln1.hook_normalized`) has no nbvene name, or
    None when it is no such hook."""
    m = _OTHER_HOOK.match(written)
    return NO_EQUIVALENT.get(m.group("hook")) if m else None
