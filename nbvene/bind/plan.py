"""The `Plan`: a spec bound to one model: prompts tokenised, sites bound, grid laid out as rows."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from nbvene.bind.prompts import Prompt
from nbvene.sites import Site, SiteMap
from nbvene.spec import Spec


@dataclass(frozen=True)
class Unit:
    """One intervention in one row: an op applied at a site, at some positions (and a head)."""

    op: int
    site: Site
    base_pos: tuple[int, ...]
    source_pos: tuple[int, ...]
    head: int | None = None


@dataclass(frozen=True)
class Row:
    """One patched run: a base example with its own units; `cell` is its place in the grid."""

    example: int
    cell: tuple[int, ...]
    units: tuple[Unit, ...]
    sample: int = 0


@dataclass(frozen=True)
class Axis:
    """A result axis: its name and one label per index (token texts for positions, with the
    positions themselves, counted in the first example)."""

    name: str
    labels: tuple
    positions: tuple | None = None


class ValueKind(str, enum.Enum):
    """What an op's intervention takes as its second argument (its source value)."""

    __str__ = str.__str__  # the value, as enum.StrEnum (Python 3.11+) gives it

    RUN = "run"
    """The source run's activation at the matching unit."""
    VECTOR = "vector"
    """The op's `vector`, broadcast to the units."""
    MEAN = "mean"
    """The unit's mean over the op's `mean_prompts`."""


@dataclass(frozen=True)
class Op:
    """What one spec statement does: the intervention module and the value it takes (`value`;
    None for an op that takes none, such as `zero:`)."""

    verb: str
    module: nn.Module
    value: ValueKind | None
    line: int
    vector: torch.Tensor | None = None
    mean_prompts: tuple[Prompt, ...] = ()
    origin: str | None = None
    """The named source a "run" op reads (`from s1`); None: the `source:` line."""
    into: str | None = None
    """The named source whose run the op changes (`into s2`); None: the base run."""


@dataclass(frozen=True)
class MetricPlan:
    name: str
    token_ids: tuple[int, ...]
    normalized: bool


@dataclass(frozen=True)
class CorruptPlan:
    """Gaussian noise of `std` on each example's subject token embeddings; `sigma` is the
    embeddings' standard deviation it was scaled by (`noise 3σ`), None for an absolute one."""

    std: float
    positions: tuple[tuple[int, ...], ...]
    samples: int
    seed: int
    sigma: float | None = None


class MemoryModel(Protocol):
    """An engine's estimate of the memory a plan's rows take (`nbvene.engine.memory`)."""

    def row_bytes(self, plan: Plan) -> int: ...

    def rows_within(self, plan: Plan, budget: int | str) -> int: ...

    def chosen(self, plan: Plan, budget: int | str, max_batch: int) -> str | None: ...


@dataclass
class Plan:
    """A spec bound to one model: its prompts tokenised, its statements as `ops`, its grid as
    `axes` and one `Row` per patched run; what the engine runs."""

    spec: Spec
    model: nn.Module
    sites: SiteMap
    base: list[Prompt]
    source: list[Prompt] | None
    ops: list[Op]
    axes: list[Axis]
    rows: list[Row]
    metric: MetricPlan | None
    corrupt: CorruptPlan | None
    collect: int | None = None
    """Index of the collect op whose units become the result, if any."""
    pad_id: int = 0
    batched: bool = False
    """Whether the base is a batch (the result then has an `example` axis first)."""
    estimate: str = "exact"
    """"exact", or "attribution": a first-order estimate of the sweep from one backward pass."""
    named: dict[str, list[Prompt]] = field(default_factory=dict)
    """Named sources (`source s1: ...`), ordered so a run comes after those patched into it."""
    memory: MemoryModel | None = field(default=None, repr=False, compare=False)
    """How much memory running it takes, as the engine that runs it estimates (`nv.plan`
    gives the engine's); `describe()` reports it."""

    def source_example(self, example: int) -> int:
        return example if self.source is not None and len(self.source) > 1 else 0

    def named_example(self, name: str, example: int) -> int:
        """The index of a base example's prompt among a named source's prompts."""
        return example if len(self.named[name]) > 1 else 0

    def serial(self) -> list[str]:
        """Named sources whose runs are patched (`into`): they run once per row, in order."""
        return [name for name in self.named if any(op.into == name for op in self.ops)]

    def describe(self, *, max_batch: int = 64, max_memory: int | str | None = None) -> str:
        """What `--dry-run` prints: the grid, the sites, and what running it takes (forward
        passes of `max_batch` rows, arithmetic, and activation memory where `memory` says)."""
        memory = self.memory
        grid = " × ".join(f"{a.name}={len(a.labels)}" for a in self.axes) or "one cell"
        sites = sorted({u.site.module + "." + u.site.io for r in self.rows for u in r.units})
        rows = len(self.rows)
        per_pass = max_batch
        if max_memory and memory is not None:
            per_pass = min(max_batch, memory.rows_within(self, max_memory))
        chunks = math.ceil(rows / per_pass) if rows else 0
        before = self._unpatched_runs()
        serial = len(self.serial())  # named sources patched `into` run before each chunk
        passes = len(before) + chunks * (1 + serial)
        rows_a_pass = min(per_pass, max(rows, 1))
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        parameters = sum(p.numel() for p in self.model.parameters())
        tokens = max(len(p) for p in self.base) * (rows * (1 + serial) + len(before))
        lines = [
            f"grid: {grid}",
            f"patched runs: {rows}",
            f"sites: {len(sites)} ({', '.join(sites[:4])}{', …' if len(sites) > 4 else ''})",
            f"forward passes: {passes} ({' + '.join(before)} + {chunks} of up to "
            f"{per_pass} patched rows"
            + (f", each after {serial} serial source" if serial else "")
            + ")",
            f"time: about {2 * parameters * tokens / 1e9:.3g} GFLOP (a CPU core runs some "
            "10 GFLOP/s, a GPU some 10,000)",
        ]
        if memory is not None:
            lines.append(
                f"memory: about {_size(memory.row_bytes(self) * rows_a_pass)} of activations a "
                f"pass ({rows_a_pass} rows), besides the model's {_size(weights)}"
            )
        if max_memory and memory is not None:
            auto = memory.chosen(self, max_memory, max_batch)
            lines += [auto] if auto else []
        c = self.corrupt
        if c is not None:
            if c.sigma is None:
                lines.append(f"noise: std {c.std:g}, added to the input embeddings' output")
            else:
                lines.append(
                    f"noise: {c.std / c.sigma:g}σ = {c.std:.4g}, added to the input "
                    f"embeddings' output (σ = {c.sigma:.4g}, their std)"
                )
        return "\n".join(lines)

    def _unpatched_runs(self) -> list[str]:
        """The runs made once before the patched rows: clean, means, named sources."""
        before = ["1 clean"] if self.source is not None else []
        means = sum(op.value == ValueKind.MEAN for op in self.ops)
        if means:
            before.append(f"{means} mean")
        serial = len(self.serial())
        if len(self.named) > serial:
            before.append(f"{len(self.named) - serial} named source")
        return [*before, "1 unpatched"]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
