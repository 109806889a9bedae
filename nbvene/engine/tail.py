"""Start at the patched layer: a row patched at layer l is identical to the corrupted run below
l, so its forward pass starts from that run's hidden state at block l's input.

The corrupted run records what the model passed to each block (hidden state, mask, position
embeddings, …); the tail calls each block l.. with its own recorded arguments, then the final
norm and the LM head. A corrupted run in several chunks records each, and `merge` joins them
into one batch.
"""

from __future__ import annotations

import bisect
from dataclasses import replace

import torch
from torch import nn

from nbvene.engine import prefix
from nbvene.engine.hooks import Hooks
from nbvene.engine.packed import Layout
from nbvene.sites import Site, SiteMap
from nbvene.sites.families import final_norm


class Tail:
    """Recorded block inputs of the corrupted run, and forward passes that start from them."""

    def __init__(self, model: nn.Module, sites: SiteMap):
        self.model = model
        self.path = sites.family.blocks
        self.blocks = model.get_submodule(self.path)
        self.norm_path = final_norm(sites.family)
        self.norm = model.get_submodule(self.norm_path)
        self.head = model.get_output_embeddings()
        self.softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
        self.hidden: dict[int, torch.Tensor] = {}  # block input, at the layers rows start at
        self.arguments: dict[int, tuple[tuple, dict]] = {}  # the rest, at every block from there
        self.parts: list[dict[int, tuple[torch.Tensor | None, tuple, dict]]] = []
        self.current: dict[int, tuple[torch.Tensor | None, tuple, dict]] = {}
        # the corrupted run's keys and values per block, for rows that run their suffix only
        self.suffixes = prefix.supports(model)
        self.calls = [prefix.Arguments(block) for block in self.blocks]
        self.recording: prefix.KeyValues | None = None
        self.kv_parts: list[dict[int, tuple[torch.Tensor, torch.Tensor]]] = []
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def supports(model: nn.Module, sites: SiteMap) -> bool:
        family = sites.family
        config = getattr(model, "config", None)
        return (
            family is not None
            and final_norm(family) is not None
            and hasattr(model, "get_output_embeddings")
            and model.get_output_embeddings() is not None
            # models that scale their logits after the head (Granite) run full forwards
            and getattr(config, "logits_scaling", 1) in (None, 1)
        )

    def record(self, hooks: Hooks, layers: set[int]) -> None:
        """Keep the inputs of blocks `layers`, and the other arguments of every block from the
        first of them on (blocks may differ: Gemma 2's sliding-window layers get their own
        mask), during the next forward pass (under `hooks`); they count once `commit` says the
        pass finished (a pass that ran out of memory is run again, and what it recorded is
        dropped)."""
        self.current = {}
        self.recording = prefix.KeyValues() if self.suffixes else None
        if not layers:
            return
        last = len(self.blocks)
        for layer in range(min(layers), last):
            hooks.on_call(self.blocks[layer], self._keeper(layer, layer in layers))
        if last in layers:  # rows patched at the last block's output start at the final norm
            hooks.on_call(self.norm, self._keeper(last, True))

    def commit(self) -> None:
        """The pass recorded last finished: keep its inputs, after those of earlier chunks."""
        if self.current:
            self.parts.append(self.current)
            if self.recording is not None:
                self.kv_parts.append(self.recording.kept)
        self.current = {}
        self.recording = None

    def _keeper(self, layer: int, hidden: bool):
        def keep(args, kwargs):
            if args:
                found = (args[0].detach(), args[1:], kwargs)
            else:
                rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
                found = (kwargs["hidden_states"].detach(), (), rest)
            self.current[layer] = found if hidden else (None, *found[1:])
            if self.recording is not None and layer < len(self.blocks):
                return self.calls[layer].with_cache(args, kwargs, self.recording)
            return None

        return keep

    def merge(self) -> bool:
        """Join the recorded chunks into one batch per layer; False when the chunks' inputs do
        not join (a mask in one chunk and none in another): the rows then run full forwards.
        Blocks called with the same objects (most families pass every block one mask) share
        one joined copy."""
        if not self.parts:
            return True
        layers = sorted(self.parts[0])
        rows = [next(h for h, _, _ in p.values() if h is not None).shape[0] for p in self.parts]
        shared: dict[tuple, tuple[tuple, dict]] = {}
        arguments = {}
        for layer in layers:
            found = [part[layer] for part in self.parts]
            key = tuple(_identity(a, k) for _, a, k in found)
            if key not in shared:
                args = _join([a for _, a, _ in found], rows)
                kwargs = _join([k for _, _, k in found], rows)
                if args is _UNJOINABLE or kwargs is _UNJOINABLE:
                    self.parts = []
                    return False
                shared[key] = (args, kwargs)
            arguments[layer] = shared[key]
        hidden = {}
        for layer in layers:  # a layer at a time: its chunks are freed before the next is joined
            hiddens = [part[layer][0] for part in self.parts]
            if hiddens[0] is None:
                continue
            for part in self.parts:
                part[layer] = (None, *part[layer][1:])
            hidden[layer] = _cat_freeing(hiddens)
        self.parts = []
        self.hidden, self.arguments = hidden, arguments
        self._merge_keys(layers)
        return True

    def _merge_keys(self, layers: list[int]) -> None:
        """Join the chunks' keys and values; rows run their suffix only if every block from the
        first recorded on kept them and takes inputs `prefix` can cut."""
        parts, self.kv_parts = self.kv_parts, []
        layers = [layer for layer in layers if layer < len(self.blocks)]  # not the final norm
        kept = all(layer in part for part in parts for layer in layers)
        if not (self.suffixes and parts and kept):
            self.suffixes = False
            return
        for layer in layers:
            hidden = next(iter(self.hidden.values()))
            args, kwargs = self.arguments[layer]
            if not self.calls[layer].cuttable(hidden, args, kwargs):
                self.suffixes = False
                return
        for layer in layers:
            pairs = [part.pop(layer) for part in parts]
            self.kv[layer] = tuple(_cat_freeing([p[i] for p in pairs]) for i in (0, 1))

    def forward(
        self, starts: list[int], base_rows: list[int], read: torch.Tensor, since: int = 0
    ) -> torch.Tensor:
        """Logits at `read` positions for rows that start at blocks `starts` (ascending);
        `base_rows` index each row's corrupted run among the recorded batch. With `since`, the
        rows run positions `since`.. only (`read` counts from there), on the recorded keys and
        values before it.

        Where the family allows it (`suffixes`), each row joins the batch at its own block: the
        rows that started run block l, and those that start at l join them from the recorded
        input; below, a row is its corrupted run. Rows come in order of their start, so the
        rows running a block are the first ones, and each edit's row indices hold."""
        joining = self.suffixes and starts == sorted(starts)
        first = starts[0] if joining else min(starts)
        recorded, width = self.hidden[first].shape[:2]
        everyone = torch.tensor(base_rows, device=self.hidden[first].device)
        dtype = prefix.mask_dtype(self.model) if since else None
        hidden = None
        picked: dict[tuple[int, int], tuple[tuple, dict]] = {}  # by arguments' identity, rows
        for layer in range(first, len(self.blocks)):
            n = bisect.bisect_right(starts, layer) if joining else len(starts)
            pick = everyone[:n]
            if hidden is None or hidden.shape[0] < n:
                entering = self.hidden[layer][
                    everyone[0 if hidden is None else hidden.shape[0] : n]
                ]
                hidden = _joined(hidden, entering[:, since:])
            found = self.arguments[layer]
            if (id(found), n) not in picked:
                args, kwargs = found
                args = _pick(args, pick, recorded)
                kwargs = {k: _pick(v, pick, recorded) for k, v in kwargs.items()}
                picked[id(found), n] = (args, kwargs)
            args, kwargs = picked[id(found), n]
            if since:
                keys, values = self.kv[layer]
                cache = prefix.KeyValues({layer: (keys[pick, :, :since], values[pick, :, :since])})
                call = self.calls[layer]
                args, kwargs = call.suffix(hidden, args, kwargs, since, width, cache, dtype)
                out = self.blocks[layer](*args, **kwargs)
            else:
                out = self.blocks[layer](hidden, *args, **kwargs)
            hidden = out if isinstance(out, torch.Tensor) else out[0]
        hidden = hidden[torch.arange(len(base_rows), device=hidden.device), read.to(hidden.device)]
        return self.logits(hidden)

    def packed(self, layout: Layout, read: list[int]) -> torch.Tensor:
        """Logits at positions `read` of rows laid out in lanes by `layout` (each row's
        positions that differ from its corrupted run), each lane joining at its rows' block."""
        dtype = prefix.mask_dtype(self.model)
        hidden, running = None, 0
        for layer in range(layout.starts[0], len(self.blocks) + 1):
            lanes = layout.lanes(layer)
            if lanes > running:
                hidden = _joined(hidden, layout.hidden(self.hidden[layer], slice(running, lanes)))
                running = lanes
            if layer == len(self.blocks):
                break
            keys, values = self.kv[layer]
            cache = prefix.KeyValues(
                {layer: (layout.keys(keys, lanes), layout.keys(values, lanes))}
            )
            args, kwargs = self.arguments[layer]
            call = self.calls[layer]
            args, kwargs = call.packed(hidden, args, kwargs, layout, lanes, cache, dtype)
            out = self.blocks[layer](*args, **kwargs)
            hidden = out if isinstance(out, torch.Tensor) else out[0]
        # the norm sees every lane: edits moved to its input (`entry_site`) index them
        lane, slot = layout.reads(read)
        normed = self.norm(hidden)
        return self.logits(normed[lane.to(normed.device), slot.to(normed.device)], normed=True)

    def logits(self, hidden: torch.Tensor, normed: bool = False) -> torch.Tensor:
        """The LM head's output for last-block hidden states (rows, d) (`normed`: already
        through the final norm)."""
        logits = self.head(hidden if normed else self.norm(hidden))
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def entry(self, site: Site) -> int:
        """The block a packed row with a unit at `site` starts at: a block's output is the
        next block's input (the final norm's after the last block), so a row patched there
        starts after it; any other site's block."""
        return site.layer + 1 if self._after_block(site) else site.layer

    def entry_site(self, site: Site) -> Site:
        """Where a packed row's edit at `site` applies: a block's output at the next block's
        input (or the final norm's), which is the same tensor; any other site where it is."""
        if not self._after_block(site):
            return site
        after = site.layer + 1
        module = f"{self.path}.{after}" if after < len(self.blocks) else self.norm_path
        return replace(site, module=module, io="input")

    def _after_block(self, site: Site) -> bool:
        return (
            site.module == f"{self.path}.{site.layer}"
            and site.io == "output"
            and site.residual is None
        )


def _joined(running: torch.Tensor | None, entering: torch.Tensor) -> torch.Tensor:
    """The rows running a block, with those that join them there (moved to the running
    rows' device: in a model split over devices they come from the block before)."""
    return entering if running is None else torch.cat([running, entering.to(running.device)])


def _identity(args: tuple, kwargs: dict) -> tuple:
    """Which objects a block was called with (they are kept alive, so ids stay unique)."""
    return tuple(id(a) for a in args), tuple((k, id(v)) for k, v in kwargs.items())


_UNJOINABLE = object()


def _cat_freeing(tensors: list[torch.Tensor]) -> torch.Tensor:
    """`torch.cat(tensors)`, dropping each part once it is copied: the run's recorded block
    inputs are not held twice while they are joined."""
    if len(tensors) == 1:
        return tensors.pop()
    first = tensors[0]
    joined = first.new_empty((sum(t.shape[0] for t in tensors), *first.shape[1:]))
    del first
    at = 0
    while tensors:
        part = tensors.pop(0)
        joined[at : at + part.shape[0]] = part
        at += part.shape[0]
    return joined


def _join(values: list, rows: list[int]):
    """One value from the same argument of several chunks of `rows` rows each: tensors with a
    row axis are concatenated, anything else must be the same in every chunk."""
    first = values[0]
    if len(values) == 1:
        return first
    if isinstance(first, torch.Tensor):
        if not all(isinstance(v, torch.Tensor) for v in values):
            return _UNJOINABLE
        if all(v.dim() >= 2 and v.shape[0] == n for v, n in zip(values, rows, strict=True)):
            return torch.cat(values)
        same = all(v.shape == first.shape and torch.equal(v, first) for v in values[1:])
        return first if same else _UNJOINABLE
    if isinstance(first, tuple | list):
        if not all(type(v) is type(first) and len(v) == len(first) for v in values):
            return _UNJOINABLE
        joined = [_join([v[i] for v in values], rows) for i in range(len(first))]
        if any(j is _UNJOINABLE for j in joined):
            return _UNJOINABLE
        return type(first)(joined) if type(first) in (tuple, list) else tuple(joined)
    if isinstance(first, dict):
        if not all(isinstance(v, dict) and v.keys() == first.keys() for v in values):
            return _UNJOINABLE
        joined = {k: _join([v[k] for v in values], rows) for k in first}
        return _UNJOINABLE if any(j is _UNJOINABLE for j in joined.values()) else joined
    try:
        same = all(v is first or bool(v == first) for v in values[1:])
    except Exception:  # values that do not compare (a cache object, an array)
        same = False
    return first if same else _UNJOINABLE


def _pick(value, rows: torch.Tensor, recorded: int):
    """Index the batch axis of recorded tensors (masks, position embeddings) by row; tensors with
    a batch axis of 1 broadcast as they are."""
    if isinstance(value, torch.Tensor):
        if value.dim() > 0 and value.shape[0] == recorded and recorded > 1:
            return value[rows.to(value.device)]
        return value
    if isinstance(value, tuple):
        return tuple(_pick(v, rows, recorded) for v in value)
    return value


def first_position(row, ops) -> int:
    """The first position a row's units change, from which on it runs when the corrupted run's
    keys and values are kept (0, every position, when a unit sits outside the blocks, edits
    attention weights, or reads or writes a named source's run)."""
    if not all(on_own_run(unit, ops[unit.op]) for unit in row.units):
        return 0
    positions = [p for unit in row.units for p in unit.base_pos]
    return max(min(positions, default=0), 0)


def on_own_run(unit, op) -> bool:
    """Whether a unit changes a block's activations in its row's own run only: not outside
    the blocks, not attention weights, not reading or writing a named source's run."""
    return not (unit.site.layer is None or unit.site.io == "weights" or op.origin or op.into)


def last_position(row) -> int:
    """The last position a row's units change."""
    return max((p for unit in row.units for p in unit.base_pos), default=0)


def from_position(row, since: int):
    """The row with its units' positions counted from `since`: what its suffix pass sees."""
    units = tuple(replace(u, base_pos=tuple(b - since for b in u.base_pos)) for u in row.units)
    return replace(row, units=units)


def start_layer(row) -> int:
    """The first block a row's units touch (0 when a unit sits outside the blocks)."""
    layers = [u.site.layer for u in row.units]
    if not layers or any(layer is None for layer in layers):
        return 0
    return min(layers)
