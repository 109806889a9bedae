"""Many rows' suffixes as one sequence: a row patched from position p on differs from its
corrupted run only at positions p.. (attention is causal), and only up to the position its
metric reads. Rather than give every row the batch's longest suffix, the rows' suffixes are laid
end to end in one sequence of batch 1, and a mask lets each token attend to its own corrupted
run's keys and values before its row's first position, and to its own row's tokens up to
itself, as the recorded mask allows. A sweep of rows patched at different positions then
computes the tokens that differ and no padding.

`Layout` says where each row's tokens sit; `Tail.packed` runs the blocks on it. The mask's
width (the corrupted runs' positions plus the packed tokens) grows with the tokens a pass holds,
so a pass holds a few hundred tokens on a CPU (`pass_tokens`).
"""

from __future__ import annotations

import torch

PASS_TOKENS = {"cpu": 256}
"""Tokens one packed pass holds at most, by device type (others: `PASS_TOKENS_ELSEWHERE`): on a
CPU each token's attention over the pass's other tokens costs as much as its linear layers
beyond ~256 tokens; an accelerator runs wide passes at the same cost per token."""
PASS_TOKENS_ELSEWHERE = 2048

PREFIX_KEYS = 1024
"""The most corrupted-run positions (runs × width) a packed pass attends over; a plan with more
(many examples) keeps one row per batch entry, each on its own run's keys and values."""


def pass_tokens(device: torch.device) -> int:
    return PASS_TOKENS.get(device.type, PASS_TOKENS_ELSEWHERE)


class Layout:
    """Rows' suffixes end to end: row i holds positions `since[i]`..`end[i] - 1` of recorded
    corrupted run `bases[i]`, from `offsets[i]` on. The first n rows are a prefix of the
    sequence (rows join in order), so every tensor here is built once and cut to n rows."""

    def __init__(self, bases: list[int], since: list[int], end: list[int], width: int, device):
        self.width = width
        self.since_of = list(since)
        self.offsets = [0]
        for s, e in zip(since, end, strict=True):
            self.offsets.append(self.offsets[-1] + e - s)
        lengths = torch.tensor([e - s for s, e in zip(since, end, strict=True)], device=device)
        rows = torch.arange(len(bases), device=device).repeat_interleave(lengths)
        starts = torch.tensor(since, device=device)
        self.row = rows
        self.base = torch.tensor(bases, device=device)[rows]
        self.position = (
            starts[rows]
            + torch.arange(len(rows), device=device)
            - torch.tensor(self.offsets[:-1], device=device).repeat_interleave(lengths)
        )
        self.since = starts[rows]
        self.runs = torch.tensor(sorted(set(bases)), device=device)
        self._cut: dict[int, object] = {}

    def tokens(self, n: int) -> int:
        """The packed tokens of the first `n` rows."""
        return self.offsets[n]

    def keys(self, keys: torch.Tensor) -> torch.Tensor:
        """The recorded keys (or values) of the corrupted runs the rows use, (runs, heads,
        width, d), as one batch-1 prefix: (1, heads, runs · width, d)."""
        chosen = keys[self.runs.to(keys.device)]
        return chosen.transpose(0, 1).flatten(1, 2)[None]

    def mask(self, recorded: torch.Tensor | None, n: int, dtype: torch.dtype) -> torch.Tensor:
        """The first `n` rows' (1, heads, tokens, prefix + tokens) mask: the prefix keys of a
        token's own run before its row's first position, and its own row's tokens, where the
        recorded mask (None: causal) lets its position see theirs."""
        full = self._once(("mask", id(recorded), dtype), lambda: self._mask(recorded, dtype))
        t = self.tokens(n)
        return full[:, :, :t, : len(self.runs) * self.width + t]

    def _mask(self, recorded, dtype):
        width, device = self.width, self.base.device
        key_run = self.runs.repeat_interleave(width)
        key_position = torch.arange(width, device=device).repeat(len(self.runs))
        own_prefix = (key_run[None] == self.base[:, None]) & (
            key_position[None] < self.since[:, None]
        )
        own_row = self.row[:, None] == self.row[None]
        allowed = torch.cat([own_prefix, own_row], dim=1)[None, None]
        if recorded is None:
            causal = torch.cat(
                [
                    key_position[None] <= self.position[:, None],
                    self.position[None] <= self.position[:, None],
                ],
                dim=1,
            )
            allowed = allowed & causal[None, None]
            if dtype == torch.bool:
                return allowed
            blocked = torch.zeros(allowed.shape, dtype=dtype, device=device)
            return blocked.masked_fill(~allowed, torch.finfo(dtype).min)
        runs = self.base if recorded.shape[0] > 1 else torch.zeros_like(self.base)
        runs = runs.to(recorded.device)[:, None]
        query = self.position.to(recorded.device)[:, None]
        key = torch.cat([key_position, self.position]).to(recorded.device)[None]
        values = recorded[runs, :, query, key].permute(2, 0, 1)[None]  # (1, heads, T, K)
        allowed = allowed.to(recorded.device)
        if recorded.dtype == torch.bool:
            return values & allowed
        return values.masked_fill(~allowed, torch.finfo(recorded.dtype).min)

    def positions(self, value: torch.Tensor | None, n: int):
        """Per-token rows of a recorded (batch or 1, width, …) tensor (position ids, rotary
        cos and sin) or of a (width,) one (cache positions), for the first `n` rows."""
        if value is None:
            return None
        if isinstance(value, tuple):
            return tuple(self.positions(v, n) for v in value)
        full = self._once(("positions", id(value)), lambda: self._positions(value))
        return full[..., : self.tokens(n), :] if value.dim() == 3 else full[..., : self.tokens(n)]

    def _positions(self, value):
        position = self.position.to(value.device)
        if value.dim() == 1:
            return value[position]
        runs = self.base if value.shape[0] > 1 else torch.zeros_like(self.base)
        return value[runs.to(value.device), position][None]

    def hidden(self, recorded: torch.Tensor, rows: slice) -> torch.Tensor:
        """The recorded block input of `rows`' tokens, (1, tokens, d)."""
        at = slice(self.offsets[rows.start], self.offsets[rows.stop])
        device = recorded.device
        return recorded[self.base[at].to(device), self.position[at].to(device)][None]

    def reads(self, read: list[int]) -> torch.Tensor:
        """Where each row's read position sits in the sequence."""
        at = [o + r - s for o, r, s in zip(self.offsets, read, self.since_of, strict=False)]
        return torch.tensor(at, device=self.base.device)

    def _once(self, key, make):
        if key not in self._cut:
            self._cut[key] = make()
        return self._cut[key]
