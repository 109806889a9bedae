"""Tiny randomly initialised models, one per architecture family, built from a config in
milliseconds: for tests and demos, with no download and weights that depend only on a seed.
(The site adapters of each family are `nbvene.sites.families`; this module only builds models.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from nbvene.errors import NbveneError, did_you_mean
from nbvene.models.tokenizer import tiny_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

HIDDEN = 64
HEADS = 4
KV_HEADS = 2  # grouped-query attention, where the family has it
HEAD_DIM = HIDDEN // HEADS
MLP = 128
POSITIONS = 128


@dataclass(frozen=True)
class Family:
    """How to configure one architecture family at tiny size.

    `config` maps a layer count to the `AutoConfig.for_model` keyword arguments, in the
    family's own names (`n_embd` for GPT-2, `ffn_dim` for OPT, ...).
    """

    model_type: str
    config: Callable[[int], dict[str, Any]]
    masked: bool = False  # a masked language model (BERT-style) rather than a causal one


def _standard(layers: int, **extra: Any) -> dict[str, Any]:
    """The config names most families share (BERT, GPT-NeoX, Llama, ...)."""
    return {
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "intermediate_size": MLP,
        "max_position_embeddings": POSITIONS,
        "num_hidden_layers": layers,
        **extra,
    }


def _grouped(layers: int, **extra: Any) -> dict[str, Any]:
    """Llama-style families, with grouped-query attention."""
    return _standard(layers, num_key_value_heads=KV_HEADS, **extra)


def _gpt2_style(layers: int, **extra: Any) -> dict[str, Any]:
    return {
        "n_embd": HIDDEN,
        "n_head": HEADS,
        "n_inner": MLP,
        "n_positions": POSITIONS,
        "n_layer": layers,
        **extra,
    }


def _gpt_neo(layers: int) -> dict[str, Any]:
    # Alternating global and local attention, as in the released checkpoints.
    pattern = [[["global", "local"], layers // 2]] + ([[["global"], 1]] if layers % 2 else [])
    return {
        "hidden_size": HIDDEN,
        "num_heads": HEADS,
        "intermediate_size": MLP,
        "max_position_embeddings": POSITIONS,
        "num_layers": layers,
        "attention_types": pattern,
    }


def _opt(layers: int) -> dict[str, Any]:
    return {
        "hidden_size": HIDDEN,
        "num_attention_heads": HEADS,
        "ffn_dim": MLP,
        "word_embed_proj_dim": HIDDEN,
        "max_position_embeddings": POSITIONS,
        "num_hidden_layers": layers,
    }


FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        "gpt2": Family("gpt2", _gpt2_style),
        "llama": Family("llama", _grouped),
        "mistral": Family("mistral", _grouped),
        "qwen2": Family("qwen2", _grouped),
        # Qwen3 and Gemma fix head_dim (128, 256) whatever the hidden size; Gemma 2 also scales
        # queries by query_pre_attn_scalar rather than head_dim.
        "qwen3": Family("qwen3", lambda n: _grouped(n, head_dim=HEAD_DIM)),
        "gemma": Family("gemma", lambda n: _grouped(n, head_dim=HEAD_DIM)),
        "gemma2": Family(
            "gemma2", lambda n: _grouped(n, head_dim=HEAD_DIM, query_pre_attn_scalar=HEAD_DIM)
        ),
        "olmo": Family("olmo", _grouped),
        "phi3": Family("phi3", lambda n: _grouped(n, original_max_position_embeddings=POSITIONS)),
        "gpt_neox": Family("gpt_neox", _standard),
        "gpt_neo": Family("gpt_neo", _gpt_neo),
        "opt": Family("opt", _opt),
        "gptj": Family("gptj", lambda n: _gpt2_style(n, rotary_dim=HEAD_DIM // 2)),
        "bert": Family("bert", _standard, masked=True),
        # RoBERTa numbers positions from pad_token_id + 1, so two slots are never used.
        "roberta": Family(
            "roberta", lambda n: _standard(n, max_position_embeddings=POSITIONS + 2), masked=True
        ),
    }
)


def tiny(
    family: str = "llama", *, seed: int = 0, layers: int = 2, **config_overrides: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A tiny randomly initialised model of `family` and its tokenizer, in eval mode, float32.

    >>> model, tok = tiny("gpt2", layers=3)
    >>> logits = model(**tok("When John and Mary went to the store,", return_tensors="pt")).logits

    Hidden size 64, 4 heads (2 key/value heads for Llama-style families), MLP 128, 128
    positions, a 1,000-token byte-level BPE vocabulary. The weights depend only on `seed`; the
    caller's global torch RNG is left as it was. `config_overrides` go to the config last, in
    the family's own names (`tiny("llama", hidden_size=128)`, `tiny("gpt2", n_embd=128)`).
    Families are the keys of `FAMILIES`; BERT and RoBERTa are masked language models.
    """
    spec = FAMILIES.get(family)
    if spec is None:
        hint = did_you_mean(family, FAMILIES)
        known = ", ".join(FAMILIES)
        raise NbveneError(
            f"unknown model family {family!r}",
            hint=f"{hint} Known families: {known}" if hint else f"known families: {known}",
        )
    # transformers is imported here, not at the top: `import nbvene` stays fast without it.
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    tokenizer = tiny_tokenizer(masked=spec.masked)
    kwargs = {
        **spec.config(layers),
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        **config_overrides,
    }
    config = AutoConfig.for_model(spec.model_type, **kwargs)
    config.name_or_path = f"nbvene-tiny-{family}"
    auto = AutoModelForMaskedLM if spec.masked else AutoModelForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config, attn_implementation="eager", dtype=torch.float32)
    return model.eval(), tokenizer
