"""Run only the positions that differ: a row patched at positions ≥ p is identical to the
corrupted run at every position before p, at every layer (attention is causal), so its blocks
need only positions p.. as queries, attending to the corrupted run's keys and values for the
positions before p.

The corrupted run keeps each block's attention keys and values (`KeyValues` stands in for a
transformers cache inside the blocks' attention: it keeps what it is given and changes
nothing); a suffix pass hands each block its rows' kept prefix through the same argument, with
the block's other inputs (mask, rotary positions, position ids) cut to the suffix's queries.
Decoder families whose attention only calls the cache's `update` take part; any other model,
and any argument this module does not know how to cut, runs today's full-width tail.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

CACHE_ARGUMENTS = ("past_key_values", "layer_past")
"""The name a block's forward gives its KV cache (GPT-NeoX: `layer_past`)."""

FAMILIES = frozenset({"llama", "gpt2", "gpt_neox", "gemma2", "gemma", "mistral", "qwen2", "olmo"})
"""Model types whose blocks' self-attention calls the cache's `update(keys, values, layer)`
and nothing else, so a stand-in for it sees every key and value."""

ATTENTION = frozenset({"eager", "sdpa"})


def supports(model: nn.Module) -> bool:
    """Whether rows of `model` can run their suffix only: a causal decoder of a known family,
    with eager or SDPA attention."""
    config = getattr(model, "config", None)
    return (
        config is not None
        and getattr(config, "model_type", None) in FAMILIES
        and getattr(config, "_attn_implementation", None) in ATTENTION
        and not getattr(config, "is_encoder_decoder", False)
        and not getattr(config, "add_cross_attention", False)
    )


class KeyValues:
    """A stand-in for a transformers cache in the blocks' attention. Recording (no `prefix`),
    it keeps each layer's keys and values and gives them back unchanged; with a `prefix`
    (layer → keys, values of the positions before the suffix), it puts them before the
    suffix's own."""

    def __init__(self, prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None):
        self.prefix = prefix
        self.kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, keys, values, layer_idx, cache_kwargs=None):
        if self.prefix is None:
            self.kept[layer_idx] = (keys.detach(), values.detach())
            return keys, values
        before_keys, before_values = self.prefix[layer_idx]
        return torch.cat([before_keys, keys], dim=-2), torch.cat([before_values, values], dim=-2)


class Arguments:
    """A block's call, by parameter name: put a `KeyValues` in its cache argument, or cut its
    inputs to the queries from position `since` on."""

    def __init__(self, block: nn.Module):
        # the class's forward, less `self`: wrappers on the instance (accelerate's hooks,
        # nnsight's envoys) pass the same arguments on, but may show other signatures
        method = inspect.signature(type(block).forward)
        self.signature = method.replace(parameters=list(method.parameters.values())[1:])
        names = self.signature.parameters
        self.cache = next((n for n in CACHE_ARGUMENTS if n in names), None)

    def with_cache(self, args: tuple, kwargs: dict, cache: KeyValues):
        """The same call with `cache` as its KV cache (None when the block takes none)."""
        if self.cache is None:
            return None
        bound = self.signature.bind(*args, **kwargs)
        bound.arguments[self.cache] = cache
        return bound.args, bound.kwargs

    def cuttable(self, hidden: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        """Whether every tensor the block is given is one `suffix` knows how to cut."""
        if self.cache is None:
            return False
        bound = self.signature.bind(hidden, *args, **kwargs)
        for name, value in _named(bound):
            if name in ("hidden_states", self.cache) or not _holds_tensor(value):
                continue
            if name not in _CUTS or (name == "attention_mask" and value.dim() != 4):
                return False
        return True

    def suffix(self, hidden, args, kwargs, since: int, width: int, cache: KeyValues, dtype):
        """The block's call for queries `since`.. of `width` positions (`hidden` is theirs),
        attending to `cache`'s prefix."""
        return self._call(
            hidden,
            args,
            kwargs,
            cache,
            lambda name, v: _CUTS[name](v, since, width, dtype, hidden.device),
        )

    def packed(self, hidden, args, kwargs, layout, n: int, cache: KeyValues, dtype):
        """The block's call for the first `n` rows of a `packed.Layout` (`hidden` holds their
        tokens), attending to `cache`'s prefix of their corrupted runs."""

        def cut(name, value):
            if name == "attention_mask":
                return layout.mask(value, n, dtype)
            return layout.positions(value, n)

        return self._call(hidden, args, kwargs, cache, cut)

    def _call(self, hidden, args, kwargs, cache: KeyValues, cut):
        """The block's call with `hidden`, `cache`, and every argument `_CUTS` names replaced
        by `cut(name, value)`."""
        bound = self.signature.bind(hidden, *args, **kwargs)
        extra = bound.arguments.get("kwargs") if "kwargs" in self.signature.parameters else None
        for name, value in list(_named(bound)):
            if name in _CUTS:
                new = cut(name, value)
                if extra is not None and name in extra:
                    extra[name] = new
                else:
                    bound.arguments[name] = new
        bound.arguments[self.cache] = cache
        return bound.args, bound.kwargs


def _named(bound: inspect.BoundArguments):
    """(name, value) of every argument, the `**kwargs` ones by their own names."""
    for name, value in bound.arguments.items():
        if bound.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            yield from value.items()
        elif bound.signature.parameters[name].kind is not inspect.Parameter.VAR_POSITIONAL:
            yield name, value


def _holds_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(value, tuple | list) and any(_holds_tensor(v) for v in value)


def _mask(value, since, width, dtype, device):
    """The suffix's rows of a (batch, 1, queries, keys) mask; without one (SDPA's causal
    shortcut), the causal mask written out (SDPA's own would align the suffix's first query
    with the first key)."""
    if value is None:
        queries = torch.arange(since, width, device=device)[:, None]
        allowed = torch.arange(width, device=device)[None, :] <= queries
        if dtype == torch.bool:
            return allowed[None, None]
        blocked = torch.zeros(allowed.shape, dtype=dtype, device=device)
        return blocked.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]
    return value[..., since:, :]


def _positions(value, since, width, dtype, device):
    """Position ids (batch, positions) or cache positions (positions,): the suffix's."""
    return None if value is None else value[..., since:]


def _rotary(value, since, width, dtype, device):
    """Rotary (cos, sin), each (batch, positions, dimensions): the suffix's."""
    return None if value is None else tuple(v[:, since:] for v in value)


_CUTS = {
    "attention_mask": _mask,
    "position_ids": _positions,
    "cache_position": _positions,
    "position_embeddings": _rotary,
}


def mask_dtype(model: nn.Module) -> torch.dtype:
    """The mask a suffix writes out when the recorded run had none: SDPA takes booleans
    (True: attend), eager attention adds a float mask."""
    if model.config._attn_implementation == "sdpa":
        return torch.bool
    return next(model.parameters()).dtype
