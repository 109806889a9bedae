"""`attention_weight`: the attention probabilities, which no module returns for editing.

For the length of a run that touches them, the model's attention implementation is switched to
an eager one registered with transformers' attention interface; it calls the edits of the
attention module it runs for between the softmax and the product with the values.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import torch
from torch import nn

NAME = "nbvene_eager"
_edits: weakref.WeakKeyDictionary[nn.Module, list[Callable]] = weakref.WeakKeyDictionary()
# per config (by id: configs are unhashable; an entry lives only while edits hold it): the
# implementation it had before nbvene switched it, and how many edits hold the switch. The last
# one to go gives the original back, in whatever order they go.
_switched: dict[int, list] = {}
_switching = threading.Lock()


def eager_attention(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **kwargs
):
    """Eager attention as transformers' families compute it, with the module's edits applied to
    the probabilities (batch, heads, query, key)."""
    repeats = query.shape[1] // key.shape[1]  # grouped-query attention
    if repeats > 1:
        key = key.repeat_interleave(repeats, dim=1)
        value = value.repeat_interleave(repeats, dim=1)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    for edit in _edits.get(module, ()):
        new = edit(probs)
        probs = probs if new is None else new
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, probs


def _register() -> None:
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.modeling_utils import AttentionInterface

    if NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(NAME, eager_attention)
        AttentionMaskInterface.register(NAME, eager_mask)


def on_weights(model: nn.Module, module: nn.Module, edit: Callable) -> Callable[[], None]:
    """Apply `edit` to `module`'s attention probabilities, seen as (batch, query, heads·key);
    returns the function that undoes it (edit removed, attention implementation restored)."""
    _register()

    def edit_probs(probs: torch.Tensor) -> torch.Tensor | None:
        b, h, q, k = probs.shape
        new = edit(probs.transpose(1, 2).reshape(b, q, h * k))
        return None if new is None else new.reshape(b, q, h, k).transpose(1, 2)

    _edits.setdefault(module, []).append(edit_probs)
    found = (getattr(model, "config", None), getattr(module, "config", None))
    configs = [c for c in {id(c): c for c in found if c is not None}.values()]
    with _switching:
        for config in configs:
            held = _switched.setdefault(id(config), [config._attn_implementation, 0])
            held[1] += 1
            config._attn_implementation = NAME
    done = []

    def undo() -> None:
        if done:
            return
        done.append(True)
        edits = _edits.get(module, [])
        if edit_probs in edits:
            edits.remove(edit_probs)
        with _switching:
            for config in configs:
                held = _switched[id(config)]
                held[1] -= 1
                if held[1] == 0:
                    config._attn_implementation = held[0]
                    del _switched[id(config)]

    return undo
