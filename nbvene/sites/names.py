"""Component names: pyvene's vocabulary, TransformerLens aliases and hook names, raw paths."""

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

ALIASES = {
    "resid_pre": "block_input",
    "resid_post": "block_output",
    "attn_in": "attention_input",
    "attn_out": "attention_output",
    "mlp_in": "mlp_input",
    "mlp_out": "mlp_output",
    "mlp_post": "mlp_activation",
    "post": "mlp_activation",
    "q": "head_query_output",
    "k": "head_key_output",
    "v": "head_value_output",
    "z": "head_attention_value_output",
    "pattern": "attention_weight",
}

_HOOKS = {
    "hook_resid_pre": "block_input",
    "hook_resid_mid": "resid_mid",
    "hook_resid_post": "block_output",
    "hook_attn_in": "attention_input",
    "hook_attn_out": "attention_output",
    "hook_mlp_in": "mlp_input",
    "hook_mlp_out": "mlp_output",
    "mlp.hook_post": "mlp_activation",
    "attn.hook_q": "head_query_output",
    "attn.hook_k": "head_key_output",
    "attn.hook_v": "head_value_output",
    "attn.hook_z": "head_attention_value_output",
    "attn.hook_pattern": "attention_weight",
}
_HOOK_NAME = re.compile(r"^blocks\.(\d+)\.(" + "|".join(re.escape(h) for h in _HOOKS) + r")$")
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
    m = _HOOK_NAME.match(written)
    if m:
        return Component(_HOOKS[m.group(2)], layer=int(m.group(1)))
    m = _RAW_PATH.match(written)
    if m:
        module = re.sub(r"\[(\d+)\]", r".\1", m.group("module"))
        return Component(written, module=module, io=m.group("io"))
    return None


def known_names() -> tuple[str, ...]:
    """Every name `component` knows without a model, for 'did you mean' hints."""
    return (*COMPONENTS, *ALIASES)
