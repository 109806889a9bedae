"""Packed passes: a row patched from position p on differs from its corrupted run only at
positions p.. (attention is causal), and only up to the position its metric reads. Rather than
give every row the batch's longest suffix, rows that start at the same block on the same
corrupted run are laid end to end in lanes (a lane is one batch entry, on its run's keys and
values), and a mask lets each token attend to the run's positions before its row's first
position, and to its own row's tokens up to itself, as the recorded mask allows. A sweep of
rows patched at different positions computes the tokens that differ, and little padding.

`Layout` says where each row's tokens sit; `Tail.packed` runs the blocks on it, lanes joining
at their rows' block. A lane holds a few dozen tokens (`LANE_TOKENS`): a token attends over its
lane, so longer lanes would cost attention; a pass holds many lanes (`pass_tokens`).
"""

from __future__ import annotations

import torch

PASS_TOKENS = {"cpu": 1024}
"""Tokens one packed pass holds at most, by device type (others: `PASS_TOKENS_ELSEWHERE`), if
`max_batch` rows of the prompt's width hold as many."""
PASS_TOKENS_ELSEWHERE = 8192

LANE_TOKENS = 64
"""A lane's length, unless a row is longer."""


def pass_tokens(device: torch.device) -> int:
    return PASS_TOKENS.get(device.type, PASS_TOKENS_ELSEWHERE)


class Layout:
    """Rows in lanes: row i holds positions `since[i]`..`end[i] - 1` of recorded corrupted run
    `bases[i]`, in lane `lane[i]` from slot `slot[i]` on. A lane holds rows of one start block
    (`starts[i]`) and one run, and lanes come in the order of their start, so the lanes running
    a block are the first ones: every tensor here is built once and cut to the lanes that run."""

    def __init__(self, starts, bases, since, end, width: int, device):
        self.width = width
        self.since_of = list(since)
        self.lengths = lengths = [e - s for s, e in zip(since, end, strict=True)]
        self.lane, self.slot, lane_starts, fill = _lanes(starts, bases, lengths)
        self.starts = lane_starts
        self.length = max(fill)
        lanes, length = len(fill), self.length
        # each slot's row (-1: padding), its corrupted run, and its position
        row = torch.full((lanes, length), -1, dtype=torch.long)
        base = torch.zeros((lanes, length), dtype=torch.long)
        position = torch.zeros((lanes, length), dtype=torch.long)
        first = torch.zeros((lanes, length), dtype=torch.long)
        for i, (lane, slot, n) in enumerate(zip(self.lane, self.slot, lengths, strict=True)):
            row[lane, slot : slot + n] = i
            base[lane, slot : slot + n] = bases[i]
            position[lane, slot : slot + n] = torch.arange(since[i], end[i])
            first[lane, slot : slot + n] = since[i]
        self.row, self.base = row.to(device), base.to(device)
        self.position, self.first = position.to(device), first.to(device)
        self.runs = base[:, 0].to(device)  # each lane's corrupted run
        self._made: dict = {}

    def lanes(self, layer: int) -> int:
        """How many lanes run block `layer`."""
        return sum(1 for start in self.starts if start <= layer)

    def keys(self, keys: torch.Tensor, lanes: int) -> torch.Tensor:
        """The recorded keys (or values), (runs, heads, width, d), of the running lanes' runs."""
        return keys[self.runs[:lanes].to(keys.device)]

    def mask(self, recorded: torch.Tensor | None, lanes: int, dtype: torch.dtype):
        """The running lanes' (lanes, heads, slots, width + slots) mask: the lane's run's
        positions before a token's row's first position, and its own row's tokens, where the
        recorded mask (None: causal) lets its position see theirs. A padding slot sees the
        padding of its lane (so no row of the mask is empty)."""
        full = self._once(("mask", id(recorded), dtype), lambda: self._mask(recorded, dtype))
        return full[:lanes]

    def _mask(self, recorded, dtype):
        width, device = self.width, self.base.device
        key_position = torch.arange(width, device=device)
        query_position = self.position[..., None]
        own_prefix = (key_position < self.first[..., None]) & (self.row >= 0)[..., None]
        own_row = self.row[:, :, None] == self.row[:, None, :]
        allowed = torch.cat([own_prefix, own_row], dim=-1)[:, None]  # (lanes, 1, T, W + T)
        if recorded is None:
            causal = torch.cat(
                [
                    (key_position <= query_position).expand_as(own_prefix),
                    self.position[:, None, :] <= query_position,
                ],
                dim=-1,
            )
            allowed = allowed & causal[:, None]
            if dtype == torch.bool:
                return allowed
            blocked = torch.zeros(allowed.shape, dtype=dtype, device=device)
            return blocked.masked_fill(~allowed, torch.finfo(dtype).min)
        on = recorded.device
        runs = self.base if recorded.shape[0] > 1 else torch.zeros_like(self.base)
        keys = torch.cat(
            [
                key_position.expand(*self.position.shape, -1),
                self.position[:, None, :].expand(-1, self.length, -1),
            ],
            dim=-1,
        )
        values = recorded[runs.to(on)[..., None], :, self.position.to(on)[..., None], keys.to(on)]
        values = values.permute(0, 3, 1, 2)  # (lanes, heads, T, W + T)
        allowed = allowed.to(on)
        if recorded.dtype == torch.bool:
            return values & allowed
        return values.masked_fill(~allowed, torch.finfo(recorded.dtype).min)

    def positions(self, value: torch.Tensor | None, lanes: int):
        """Per-slot rows of a recorded (batch or 1, width, …) tensor (position ids, rotary cos
        and sin) for the running lanes; a (width,) one (cache positions) by its first lane."""
        if value is None:
            return None
        if isinstance(value, tuple):
            return tuple(self.positions(v, lanes) for v in value)
        full = self._once(("positions", id(value)), lambda: self._positions(value))
        return full if value.dim() == 1 else full[:lanes]

    def _positions(self, value):
        position = self.position.to(value.device)
        if value.dim() == 1:
            return value[position[0]]
        runs = self.base if value.shape[0] > 1 else torch.zeros_like(self.base)
        return value[runs.to(value.device), position]

    def hidden(self, recorded: torch.Tensor, lanes: slice) -> torch.Tensor:
        """The recorded block input of `lanes`' slots, (lanes, slots, d)."""
        device = recorded.device
        return recorded[self.base[lanes].to(device), self.position[lanes].to(device)]

    def places(self) -> list[tuple[int, int]]:
        """Each row's lane, and the slot of its first position."""
        return list(zip(self.lane, self.slot, strict=True))

    def reads(self, read: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's read position: its lane, its slot."""
        slots = [o + r - s for o, r, s in zip(self.slot, read, self.since_of, strict=True)]
        device = self.base.device
        return torch.tensor(self.lane, device=device), torch.tensor(slots, device=device)

    def _once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]


def _lanes(starts: list[int], bases: list[int], lengths: list[int]):
    """Each row's lane and slot, each lane's start, and each lane's filled slots: rows of one
    start and one run share lanes of `LANE_TOKENS` (or the longest row's) slots, the longest
    first into the first lane with room (first fit decreasing); lanes in order of their start."""
    capacity = max(LANE_TOKENS, max(lengths))
    lane, slot = [0] * len(lengths), [0] * len(lengths)
    lane_starts: list[int] = []
    fill: list[int] = []
    open_lanes: dict[tuple[int, int], list[int]] = {}  # (start, run): its lanes
    for i in sorted(range(len(starts)), key=lambda i: (starts[i], -lengths[i])):
        mine = open_lanes.setdefault((starts[i], bases[i]), [])
        room = next((k for k in mine if fill[k] + lengths[i] <= capacity), None)
        if room is None:
            room = len(fill)
            fill.append(0)
            lane_starts.append(starts[i])
            mine.append(room)
        lane[i], slot[i] = room, fill[room]
        fill[room] += lengths[i]
    return lane, slot, lane_starts, fill
