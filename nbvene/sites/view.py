"""Views: where a component's units sit inside the raw tensor a hook sees.

A site's hook sees e.g. the (batch, seq, 3·hidden) output of GPT-2's fused `c_attn`; the
view reads the query part of it as (batch, seq, heads, head_dim) and writes a new one back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange


@dataclass(frozen=True)
class View:
    """Units `[start:stop]` of the last dimension, per head when `by_head`.

    `fused > 1` describes a projection fused per head, laid out as (heads, fused, head_dim)
    on the last dimension (GPT-NeoX's `query_key_value`); `part` then picks q, k or v.
    """

    start: int = 0
    stop: int | None = None
    heads: int | None = None
    by_head: bool = False
    fused: int = 1
    part: int = 0

    def read(self, raw: torch.Tensor) -> torch.Tensor:
        """The units: (..., d), or (..., heads, head_dim) when `by_head`."""
        if self.fused > 1:
            x = rearrange(raw, "... (h f d) -> ... h f d", h=self.heads, f=self.fused)
            x = x[..., self.part, :]
            return x if self.by_head else rearrange(x, "... h d -> ... (h d)")
        x = raw[..., self.start : self.stop] if self.sliced else raw
        return rearrange(x, "... (h d) -> ... h d", h=self.heads) if self.by_head else x

    def write(self, raw: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """`raw` with the viewed part replaced by `units` (shaped as `read` returns them)."""
        if self.fused > 1:
            x = rearrange(raw, "... (h f d) -> ... h f d", h=self.heads, f=self.fused)
            if not self.by_head:
                units = rearrange(units, "... (h d) -> ... h d", h=self.heads)
            parts = [units if i == self.part else x[..., i, :] for i in range(self.fused)]
            return rearrange(torch.stack(parts, dim=-2), "... h f d -> ... (h f d)")
        if self.by_head:
            units = rearrange(units, "... h d -> ... (h d)")
        if not self.sliced:
            return units
        stop = raw.shape[-1] if self.stop is None else self.stop
        return torch.cat([raw[..., : self.start], units, raw[..., stop:]], dim=-1)

    @property
    def sliced(self) -> bool:
        return self.start != 0 or self.stop is not None


WHOLE = View()
