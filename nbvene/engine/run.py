"""Run a Plan: the source run once, the corrupted baseline once, then the rows in chunks, each
row with its own units (its own layer, positions and head) so one forward pass holds many cells.
Every pass goes through one `Budget`: at most `max_batch` rows, halved on out-of-memory. A sweep
drawn live runs its first cell alone first, so it shows at once; one that can be stopped checks
between blocks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from nbvene.bind.noise import noise_draws
from nbvene.bind.plan import Plan, Row
from nbvene.bind.prompts import Prompt
from nbvene.engine.edits import Sources, base_edits, noise_edit, store_edit
from nbvene.engine.executor import Executor, stop_between_blocks
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget, limit_bytes
from nbvene.engine.metrics import metric_values
from nbvene.engine.multisource import (
    clean_runs,
    patched_runs,
    read_sites,
    source_run,
    unit_means,
)
from nbvene.engine.packed import Layout, pass_tokens
from nbvene.engine.tail import (
    Tail,
    first_position,
    from_position,
    last_position,
    on_own_run,
    start_layer,
)
from nbvene.errors import NbveneError
from nbvene.sites.families import dimensions

Progress = Callable[..., None]
"""Called after each chunk of the grid with (rows done, rows in all); a callback that takes a
third argument also gets the `Outcome` so far (rows not run yet hold NaN), to draw a sweep live."""

TOP_K = 5
"""How many next tokens a sweep keeps per cell (`Outcome.top`), so a click needs no re-run."""


@dataclass
class Outcome:
    """Per-row values (metric, or collected units) in plan order, and the metric's baselines.

    `done` is False when the run was interrupted: rows not run hold NaN. `top`, for a sweep
    whose metric reads the output, holds each cell's likeliest next tokens at the read position
    (one cell: a row's noise samples, their probabilities averaged): `{"ids": (cells, k),
    "probs": (cells, k)}` in plan order, id -1 and probability NaN where not run yet;
    `baseline_top` the same for the clean and corrupted runs of the first example:
    `{"clean": {"ids": (k,), "probs": (k,)}, "corrupted": {...}}` (a run not made is absent)."""

    values: torch.Tensor
    clean: torch.Tensor | None
    corrupted: torch.Tensor | None
    done: bool = True
    top: dict | None = None
    baseline_top: dict | None = None


class Stopped(Exception):
    """Raised by `execute` on KeyboardInterrupt (in any pass, the grid's or those before it),
    carrying what was measured so far (the public `nv.SweepInterrupted` is made from it)."""

    def __init__(self, outcome: Outcome):
        super().__init__("interrupted")
        self.outcome = outcome


def _reporter(progress: Progress | None, partial: Callable[[], Outcome]):
    """`progress(done, total)` as it always was, or `progress(done, total, outcome)` for a
    callback that takes a third argument (the outcome is only built for those)."""
    if progress is None:
        return None
    try:
        inspect.signature(progress).bind(0, 0, None)
    except (TypeError, ValueError):  # takes two arguments, or has no signature to read
        return progress
    return lambda done, total: progress(done, total, partial())


def execute(
    plan: Plan,
    *,
    max_batch: int = 64,
    progress: Progress | None = None,
    start_at_layer: bool = True,
    max_memory: int | str | None = None,
    stop: Callable[[], bool] | None = None,
    preview: bool = False,
) -> Outcome:
    """Run every row of the plan, `max_batch` rows a forward pass (halved on out-of-memory):
    the grid's rows, and the source, baseline and `mean:` prompts too. With `max_memory`,
    rows run their suffix only if the keys and values that needs kept fit in it, and start
    at their layer only if the block inputs that needs kept fit in it. `stop()` is asked
    before every block of every pass; once it says True the run stops as on Ctrl-C. With
    `preview`, the grid's first cell runs alone before the chunks, so a live figure gets a
    cell after one small forward pass."""
    with torch.no_grad():
        sweep = Sweep(plan, start_at_layer, Budget(max_batch))
        kept = sweep.tail is not None and max_memory is not None
        limit = limit_bytes(plan.model, max_memory) if kept else None
        if kept and sweep.tail_bytes() > limit:
            sweep.tail.suffixes = False  # no keys and values kept: rows run every position
        if kept and sweep.tail_bytes() > limit:
            sweep.tail = None  # full forward passes: the same values, nothing kept
        return sweep.run(progress, stop, preview)


@dataclass
class CellLogits:
    """The output logits (at the read position) of some patched rows, of their corrupted (base)
    runs, and of their source (clean) runs (None without a source), with the metric of each
    patched row."""

    patched: torch.Tensor
    corrupted: torch.Tensor
    clean: torch.Tensor | None
    metric: torch.Tensor


def cell_logits(plan: Plan, rows: list[int]) -> CellLogits:
    """Re-run a few rows of a plan (one grid cell, with its noise samples) as full forward
    passes and keep their logits: what a heatmap shows when a cell is clicked."""
    if plan.collect is not None or plan.metric is None:
        raise NbveneError("only a sweep with a metric has logits to show per cell")
    with torch.no_grad():
        sweep = Sweep(plan, start_at_layer=False)
        sweep.keep_base_logits = True
        clean_logits, corrupted = sweep.before_grid()
        sweep.baselines(clean_logits, corrupted)
        chosen = [plan.rows[i] for i in rows]
        corrupted = sweep.base_logits[sweep.in_base(chosen)]
        metric, patched = sweep.chunk(chosen, clean_logits, keep_logits=True)
        return CellLogits(
            patched=_cpu(patched),
            corrupted=_cpu(corrupted),
            clean=_cpu(sweep.reference(clean_logits, chosen)),
            metric=metric.cpu(),
        )


class Sweep:
    """The passes of one plan through one `Executor`: the source run, the named sources' and
    `mean:` runs, the corrupted baseline (one run per example and noise sample, its `base_rows`),
    then the grid's rows in the budget's chunks, starting at their layer where the family
    allows (`Tail`)."""

    def __init__(self, plan: Plan, start_at_layer: bool, budget: Budget | None = None):
        self.plan = plan
        self.model = plan.model
        self.executor = Executor(plan.model, plan.pad_id, budget)
        self.budget = self.executor.budget
        self.device = self.executor.device
        self.sources = Sources(plan, self.device)
        self.noise = noise_draws(plan, self.model)
        self.tail = None
        if start_at_layer and plan.collect is None and Tail.supports(self.model, plan.sites):
            self.tail = Tail(self.model, plan.sites)
        samples = plan.corrupt.samples if plan.corrupt else 1
        # one corrupted run per (example, noise sample); a row reuses its own
        self.base_rows = [Row(e, (), (), k) for e in range(len(plan.base)) for k in range(samples)]
        # whether the grid's rows could run packed (`packing` also asks the tail)
        self.packable = (
            self.tail is not None
            and all(p.read_at >= 0 for p in plan.base)
            and all(on_own_run(u, plan.ops[u.op]) for r in plan.rows for u in r.units)
        )
        self.values: torch.Tensor | None = None
        self.top = Top(len(plan.rows), samples, self.device) if self.reads_output() else None
        self.offset = 0  # where `base_rows` start in the baseline's pass (after the source's)
        self.base_logits: torch.Tensor | None = None  # that pass's outputs, if kept
        self.keep_base_logits = False  # a sweep keeps their metric only: rows, not rows × vocab

    # --- the whole run -------------------------------------------------------------------

    def run(
        self, progress: Progress | None, stop: Callable[[], bool] | None = None, preview=False
    ) -> Outcome:
        clean = corrupted = None
        blocks = self.plan.sites.family.blocks if self.plan.sites.family is not None else None
        try:
            with stop_between_blocks(self.model, blocks, stop):
                clean_logits, corrupted = self.before_grid()
                clean, corrupted = self.baselines(clean_logits, corrupted)
                report = _reporter(progress, lambda: self.outcome(clean, corrupted, done=False))
                self.sweep(report, clean_logits, preview)
        except KeyboardInterrupt:
            # before the grid too: the caller gets an empty (all-NaN) outcome, not a bare stop
            raise Stopped(self.outcome(clean, corrupted, done=False)) from None
        return self.outcome(clean, corrupted)

    def baselines(self, clean_logits, metric):
        """The metric on the clean (source) run and on the corrupted run (`metric`, per base
        row), per example."""
        plan = self.plan
        if plan.metric is None:
            return None, None
        corrupted = self.per_example(metric)
        if clean_logits is None:
            return None, corrupted
        if self.top is not None:
            self.top.run("clean", self.reference(clean_logits, self.base_rows[:1]))
        clean = metric_values(plan.metric, clean_logits, clean_logits)
        return (clean.expand(len(plan.base)) if len(clean) == 1 else clean), corrupted

    def sweep(self, progress: Callable[[int, int], None] | None, clean_logits, preview=False):
        """Every row, in the budget's chunks, into self.values (and each cell's top tokens into
        self.top). With `preview`, the first cell's rows run alone first, and again in their
        chunk: its value shows after one small pass, and every value is the one the chunks
        give, as in a sweep without a preview (a pass's batch can change the last bits)."""
        rows = self.plan.rows
        order = self.order()
        finished = torch.zeros(len(rows), dtype=torch.bool)

        def run(indices: list[int]) -> torch.Tensor:
            metric, logits = self.chunk(
                [rows[i] for i in indices], clean_logits, keep_logits=self.top is not None
            )
            if self.top is not None:
                self.top.add(indices, logits)
            return metric

        first = order[: self.cell]
        parts = (
            [first, order] if preview and self.cell < min(len(order), self.budget.size) else [order]
        )
        tokens = {}
        if self.packing:  # a pass holds as many rows as their suffixes' tokens allow
            width = max(len(p) for p in self.plan.base)
            tokens = dict(
                weigh=lambda i: self.end(rows[i]) - self.since(rows[i]),
                per_row=width,
                most=pass_tokens(self.device),
            )
        for part in parts:
            for indices, values in self.budget.chunks(part, run, "grid", **tokens):
                if self.values is None:  # on the device until the outcome is asked for
                    shape = (len(rows), *values.shape[1:])
                    self.values = torch.full(shape, float("nan"), device=values.device)
                self.values[torch.tensor(indices, device=values.device)] = values
                finished[indices] = True
                if progress is not None:
                    progress(int(finished.sum()), len(order))

    def outcome(self, clean, corrupted, done=True, values: torch.Tensor | None = None) -> Outcome:
        """Per-row values (the grid's, NaN where not run; or `values` given, an estimate's),
        normalised if asked, and the baselines."""
        values = self.values if values is None else values
        if values is None:
            values = torch.full((len(self.plan.rows),), float("nan"))
        values = values.cpu()
        metric = self.plan.metric
        baselines = clean is not None and corrupted is not None  # None if stopped before them
        if metric is not None and metric.normalized and self.plan.collect is None and baselines:
            rows = [r.example for r in self.plan.rows]
            values = (values - corrupted[rows].cpu()) / (clean[rows] - corrupted[rows]).cpu()
        if self.top is None:
            return Outcome(values, _cpu(clean), _cpu(corrupted), done)
        return Outcome(
            values, _cpu(clean), _cpu(corrupted), done, self.top.kept(), self.top.baselines()
        )

    def reads_output(self) -> bool:
        """Whether the plan's metric reads the model's output (then its top tokens are kept)."""
        return self.plan.metric is not None and self.plan.collect is None

    @property
    def cell(self) -> int:
        """The rows of one cell: its noise samples (one without noise)."""
        return len(self.base_rows) // len(self.plan.base)

    @property
    def packing(self) -> bool:
        """Whether the grid's rows run packed (`Tail.packed`): the tail keeps the corrupted
        runs' keys and values, and every unit changes its row's own run."""
        return self.packable and self.tail is not None and self.tail.suffixes

    def entry_layers(self) -> set[int]:
        """The blocks rows start at from the corrupted run's recorded input."""
        rows = self.plan.rows
        if self.packing:
            return {self.start(r) for r in rows}
        return {self.start(r) for r in rows if self.start(r) or self.since(r)}

    def tail_bytes(self) -> int:
        """What starting rows at their layer keeps: the baseline's input of every block a row
        starts at, for each (example, noise sample), and for rows that run their suffix only,
        the keys and values of every block from the first on (counted as two hidden states)."""
        plan = self.plan
        layers = self.entry_layers()
        hidden = dimensions(self.model).hidden or 0
        dtype = next(self.model.parameters()).element_size()
        tokens = max(len(p) for p in plan.base)
        kept = len(layers)
        if layers and self.tail.suffixes:
            kept += 2 * (len(self.tail.blocks) - min(layers))
        return kept * len(self.base_rows) * tokens * hidden * dtype

    def order(self) -> list[int]:
        """Rows in the order they run: by the layer they start at, so a chunk starts late, then
        by the position they run from, so a chunk's suffix is short."""
        rows = self.plan.rows
        if self.tail is None:
            return list(range(len(rows)))
        return sorted(range(len(rows)), key=lambda i: (self.start(rows[i]), self.since(rows[i])))

    def start(self, row: Row) -> int:
        """The block a row's base run starts at: its units `into` named sources change other
        runs, so below its first own unit the base run is the unpatched one."""
        ops = self.plan.ops
        own = tuple(u for u in row.units if ops[u.op].into is None)
        if self.packing:  # a row patched at a block's output starts after it
            return min((self.tail.entry(u.site) for u in own), default=0)
        return start_layer(replace(row, units=own))

    def since(self, row: Row) -> int:
        """The first position a row runs from (`Tail`'s suffix pass; 0: every position)."""
        read = self.plan.base[row.example].read_at
        if self.tail is None or not self.tail.suffixes or read < 0:
            return 0
        return min(first_position(row, self.plan.ops), read)

    def end(self, row: Row) -> int:
        """The position after the last one a packed row runs: its read position, or its last
        unit's if later (positions after both change nothing that is read)."""
        return max(self.plan.base[row.example].read_at, last_position(row)) + 1

    def reference(self, clean_logits, rows: list[Row]):
        """The clean (source) run's logits for each of `rows`: one source for every example is
        a view (rows × vocabulary, not copied)."""
        if clean_logits is None:
            return None
        if len(clean_logits) == 1:
            return clean_logits.expand(len(rows), *clean_logits.shape[1:])
        return clean_logits[[self.plan.source_example(r.example) for r in rows]]

    def in_base(self, rows: list[Row]) -> list[int]:
        """Where each row's corrupted run sits in the baseline's pass (the tail's recorded
        batch, `base_logits`): among `base_rows`, after the source's rows where the source ran
        in that pass too (`offset`)."""
        index = {(r.example, r.sample): self.offset + i for i, r in enumerate(self.base_rows)}
        return [index[r.example, r.sample] for r in rows]

    def per_example(self, values: torch.Tensor) -> torch.Tensor:
        """Average over noise samples: one value per example."""
        samples = len(self.base_rows) // len(self.plan.base)
        return values.float().reshape(len(self.plan.base), samples).mean(dim=1)

    # --- the runs before the grid ----------------------------------------------------------

    def before_grid(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Every run before the grid: the source run, the named sources' and `mean:` runs, and
        the corrupted baseline, the source and the baseline as one pass where `together`
        allows. Returns the source's logits (None without them) and the baseline's metric per
        base row (None without a metric)."""
        both = None
        if self.together():
            # one pass; after an out-of-memory (the budget halved), the separate passes
            rows = len(self.plan.source) + len(self.base_rows)
            both = self.budget.once(self.with_source, rows, "source and baseline run")
        clean_logits = both[0] if both is not None else self.source_run()
        clean_runs(self.plan, self.sources, self.executor, budget=self.budget)  # named sources
        self.mean_runs()
        return both if both is not None else (clean_logits, self.baseline(clean_logits))

    def together(self) -> bool:
        """Whether the source run and the corrupted baseline run as one forward pass: the
        source's outputs are read (a metric), both fit one pass of the budget, and the
        source's rows see what their own pass shows them (no wider than the base's rows, and
        where narrower, padding the model masks). Not with `collect:`, sources patched `into`
        or attention weights edited, whose runs record and read otherwise."""
        plan = self.plan
        if plan.source is None or not self.reads_output() or plan.serial():
            return False
        if len(plan.source) + len(self.base_rows) > self.budget.size:
            return False
        if any(u.site.io == "weights" for r in plan.rows for u in r.units):
            return False
        source, base = max(len(p) for p in plan.source), max(len(p) for p in plan.base)
        return source == base or (source < base and self.executor.takes_mask())

    def with_source(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The source run and the corrupted baseline as one batch, the source's prompts first,
        every row right-padded to the base's width: one pass where two small ones would run
        (a pass of a few rows costs about what a pass of one does). The source's rows keep
        the units the grid reads, the noise goes on the base rows only, and the tail records
        the whole batch (`offset`: where the base rows start). Returns the source's logits and
        the baseline's metric per base row."""
        plan = self.plan
        prompts = list(plan.source)
        n = len(prompts)
        width = max(len(p) for p in plan.base)
        stored: dict = {}
        shape = (n + len(self.base_rows), width)
        record = self.recorder()
        with Hooks(self.model) as hooks:
            for site in read_sites(plan, None, plan.rows):
                hooks.at(site, store_edit(site, stored, shape))
            record(hooks)
            logits = self.logits(hooks, self.base_rows, width=width, before=prompts)
        if self.tail is not None:
            self.tail.commit()
        # a copy of the source's rows: the batch's units are not kept whole
        self.sources.cache.update({site: units[:n].clone() for site, units in stored.items()})
        self.offset = n
        clean_logits = logits[:n]
        metric = self.measured(self.base_rows, logits[n:], clean_logits)
        return clean_logits, self.joined([(metric, logits if self.keep_base_logits else None)])

    def source_run(self) -> torch.Tensor | None:
        """Keep the source activations every unit needs; return the source's logits (None
        without a metric to read them: then the run stops after the last block it keeps)."""
        if self.plan.source is None:
            return None
        read = self.plan.metric is not None
        return source_run(self.plan, self.sources, self.executor, read=read, budget=self.budget)

    def mean_runs(self) -> None:
        self.sources.means = unit_means(self.plan, self.executor, self.budget)

    def baseline(self, clean_logits) -> torch.Tensor | None:
        """The corrupted run (the base, with noise if any): its metric per row (None without
        one), the block inputs the tail starts from, and (if asked) its logits."""
        plan = self.plan
        if plan.metric is None and self.tail is None and not self.keep_base_logits:
            return None  # nothing to measure or record: `collect:` runs only the grid
        width = max(len(p) for p in plan.base)
        record = self.recorder()

        def run(chunk: list[Row]):
            with Hooks(self.model) as hooks:
                record(hooks)
                logits = self.logits(hooks, chunk, width=width)
            if self.tail is not None:
                self.tail.commit()
            metric = self.measured(chunk, logits, clean_logits)
            return metric, (logits if self.keep_base_logits else None)

        return self.joined(
            [out for _, out in self.budget.chunks(self.base_rows, run, "baseline run")]
        )

    def recorder(self) -> Callable[[Hooks], None]:
        """What a baseline pass registers for the tail: the block inputs of the layers the
        rows start at (nothing without a tail)."""
        plan, tail = self.plan, self.tail
        if tail is None:
            return lambda hooks: None
        layers = self.entry_layers()
        # Rows that edit attention weights run under nbvene's eager attention, which builds its
        # own mask (SDPA's may be None, meaning causal): the block inputs they start from must be
        # recorded under it too, so they see the mask their full forward pass would build.
        weights = {u.site.module for r in plan.rows for u in r.units if u.site.io == "weights"}

        def record(hooks: Hooks) -> None:
            tail.record(hooks, layers)
            for module in weights:
                hooks.on(module, "weights", lambda probs: None)

        return record

    def measured(self, rows: list[Row], logits: torch.Tensor, clean_logits) -> torch.Tensor | None:
        """The metric of corrupted runs `rows` from their `logits` (None without a metric), and
        the first example's top tokens."""
        plan = self.plan
        first = [i for i, r in enumerate(rows) if r.example == 0]
        if self.top is not None and first:
            self.top.run("corrupted", logits[first])
        if plan.metric is None:
            return None
        reference = self.reference(clean_logits, rows)
        # a copy: the metric may be a view of the chunk's (rows × vocab) probabilities
        return metric_values(plan.metric, logits, reference).clone()

    def joined(self, parts: list[tuple]) -> torch.Tensor | None:
        """The baseline's passes' (metric, logits kept) joined: the tail's recorded chunks (or
        no tail, where they do not join), `base_logits`, and the metric per base row."""
        packing = self.packing
        if self.tail is not None and not self.tail.merge():
            self.tail = None  # the chunks' block inputs do not join: full forward passes
        if packing and not self.packing:
            self.tail = None  # recorded where packed rows start, and they cannot run packed
        if self.keep_base_logits:
            self.base_logits = torch.cat([logits for _, logits in parts])
        if self.plan.metric is None:
            return None
        return torch.cat([metric for metric, _ in parts])

    # --- patched runs ----------------------------------------------------------------------

    def chunk(self, rows: list[Row], clean_logits, *, keep_logits: bool = False):
        """One forward pass: metric values (or collected units) of `rows`, on the host, and
        (with `keep_logits`, for `cell_logits`) the rows' logits."""
        plan = self.plan
        if self.packing:
            return self.packed(rows, clean_logits, keep_logits)
        chosen = [plan.base[r.example] for r in rows]
        found: dict = {}
        patched_runs(plan, self.sources, rows, self.executor)
        start = min(self.start(r) for r in rows) if self.tail is not None else 0
        since = min(self.since(r) for r in rows) if plan.collect is None else 0
        shape = (len(rows), max(len(p) for p in chosen) - since)
        edited = [from_position(r, since) for r in rows] if since else rows
        with Hooks(self.model) as hooks:
            base_edits(plan, self.sources, edited, hooks, shape, found)
            if plan.collect is not None:
                # the pass stops after the last block any of its edits live in
                edited = {u.site for r in rows for u in r.units}
                self.logits(hooks, rows, read=False, stop_after=edited)
                return self.collected(found, len(rows)), None
            if start > 0 or since > 0:
                read = torch.tensor([p.read_at - since for p in chosen], device=self.device)
                starts = [self.start(r) for r in rows]
                logits = self.tail.forward(starts, self.in_base(rows), read, since)
            else:
                logits = self.logits(hooks, rows)
        reference = self.reference(clean_logits, rows)
        metric = metric_values(plan.metric, logits, reference).float()
        return metric, (logits if keep_logits else None)

    def packed(self, rows: list[Row], clean_logits, keep_logits: bool):
        """`chunk` for rows that run packed (`packed.Layout`): each row's positions from its
        first patched one to its read one, in lanes of rows that start at the same block."""
        since = [self.since(r) for r in rows]
        layout = Layout(
            [self.start(r) for r in rows],
            self.in_base(rows),
            since,
            [self.end(r) for r in rows],
            max(len(p) for p in self.plan.base),
            self.device,
        )
        edited = [from_position(r, s) for r, s in zip(rows, since, strict=True)]
        with Hooks(self.model) as hooks:
            shape = (len(layout.starts), layout.length)
            base_edits(
                self.plan,
                self.sources,
                edited,
                hooks,
                shape,
                places=layout.places(),
                where=self.tail.entry_site,
            )
            logits = self.tail.packed(layout, [self.plan.base[r.example].read_at for r in rows])
        metric = metric_values(self.plan.metric, logits, self.reference(clean_logits, rows))
        return metric.float(), (logits if keep_logits else None)

    def logits(
        self,
        hooks: Hooks,
        rows: list[Row],
        *,
        width: int = 0,
        read: bool = True,
        stop_after=(),
        before: list[Prompt] = (),
    ) -> torch.Tensor | None:
        """The base run of `rows` (right-padded to at least `width` tokens) under `hooks`, with
        the rows' noise if any: the logits at each row's read position (its last token), or
        (without `read`) None, the pass run for what its edits see. Prompts `before` (the
        source's) run first in the same batch, without noise."""
        if self.noise is not None:
            # ROME's order: the noise first, then edits and reads at the embeddings' output
            # (registered before this) see and replace the corrupted value, as they would at
            # block 0's input
            noise = noise_edit(self.plan, rows, self.noise, self.device, offset=len(before))
            hooks.on(self.model.get_input_embeddings(), "output", noise, first=True)
        chosen = [*before, *(self.plan.base[r.example] for r in rows)]
        return self.executor.forward(chosen, width=width, read=read, stop_after=stop_after)

    def collected(self, found: dict, n: int) -> torch.Tensor:
        counts = {len(found[i]) for i in range(n)}  # the plan made them equal
        stacked = torch.stack([found[i] for i in range(n)]).float().cpu()
        return stacked.squeeze(1) if counts == {1} else stacked


class Top:
    """Each cell's `k` likeliest next tokens at the read position, filled chunk by chunk: a
    cell's noise samples (consecutive rows, maybe split over two chunks) have their
    probabilities summed until all are in, then averaged, as a click on the cell shows them.
    Kept on the model's device until the end."""

    def __init__(self, rows: int, samples: int, device: torch.device, k: int = TOP_K):
        self.samples, self.k, self.device = samples, k, device
        cells = rows // samples
        self.ids = torch.full((cells, k), -1, dtype=torch.long, device=device)
        self.probs = torch.full((cells, k), float("nan"), device=device)
        self.pending: dict[int, tuple[torch.Tensor, int]] = {}  # cell: (sum so far, rows in)
        self.runs: dict[str, tuple[torch.Tensor, int]] = {}  # baseline: (sum so far, rows in)

    def run(self, name: str, logits: torch.Tensor) -> None:
        """Rows of the first example's `name` run ("clean" or "corrupted"; its noise samples
        may come in several chunks): their probabilities are averaged, as a click shows them."""
        probs = torch.softmax(logits.float(), dim=-1).sum(dim=0)
        before, had = self.runs.get(name, (0, 0))
        self.runs[name] = (before + probs, had + len(logits))

    def baselines(self) -> dict:
        """The baseline runs' top tokens, on the host."""
        kept = {}
        for name, (total, rows) in self.runs.items():
            p, ids = top_k(total / rows, self.k)
            kept[name] = {"ids": ids.cpu(), "probs": p.float().cpu()}
        return kept

    def add(self, rows: list[int], logits: torch.Tensor) -> None:
        """The output logits of plan rows `rows` (rows × vocabulary, at their read positions).
        A row that is a cell alone (no noise samples) sums and averages nothing: its top
        tokens are its top logits (`top_k`), their probabilities read from its softmax."""
        logits = logits.float()
        if self.samples == 1:
            _, ids = top_k(logits, self.k)
            p = torch.softmax(logits, dim=-1).gather(-1, ids)
            self.keep(torch.tensor(rows), ids, p)
            return
        cells, where = (
            torch.tensor(rows).div(self.samples, rounding_mode="floor").unique(return_inverse=True)
        )
        sums = logits.new_zeros(len(cells), logits.shape[-1])
        sums.index_add_(0, where.to(logits.device), torch.softmax(logits, dim=-1))
        counts = torch.bincount(where, minlength=len(cells)).tolist()
        done, finished = [], []
        for j, cell in enumerate(cells.tolist()):
            if cell in self.pending:  # its other samples came in the chunk before
                before, had = self.pending.pop(cell)
                sums[j] += before
                counts[j] += had
            if counts[j] < self.samples:
                self.pending[cell] = (sums[j].clone(), counts[j])
            else:
                done.append(cell)
                finished.append(j)
        if done:
            mean = sums[finished] if len(finished) < len(cells) else sums
            p, ids = top_k(mean.div_(self.samples), self.k)
            self.keep(torch.tensor(done), ids, p)

    def keep(self, cells: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor) -> None:
        """The top tokens of finished `cells`."""
        at = cells.to(self.device)
        self.ids[at, : ids.shape[-1]] = ids.to(self.device)
        self.probs[at, : probs.shape[-1]] = probs.to(self.device)

    def kept(self) -> dict:
        """What is kept so far, on the host."""
        return {"ids": self.ids.cpu(), "probs": self.probs.float().cpu()}


BLOCK = 64
"""`top_k`'s block of the vocabulary."""


def top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`x.topk(k)` along the last axis (the vocabulary), several times faster on a large one:
    the k largest values lie in the k blocks (of `BLOCK` values) with the largest maxima, or
    in the last, partial block, so a top-k of those few values finds them."""
    k = min(k, x.shape[-1])
    blocks = x.shape[-1] // BLOCK
    if blocks < 4 * k:
        return x.topk(k, dim=-1)
    end = blocks * BLOCK
    whole = x[..., :end].unflatten(-1, (blocks, BLOCK))
    _, best = whole.amax(dim=-1).topk(k, dim=-1)
    values = whole.gather(-2, best.unsqueeze(-1).expand(*best.shape, BLOCK)).flatten(-2)
    ids = (best.unsqueeze(-1) * BLOCK + torch.arange(BLOCK, device=x.device)).flatten(-2)
    rest = torch.arange(end, x.shape[-1], device=x.device).expand(*x.shape[:-1], -1)
    top, at = torch.cat([values, x[..., end:]], dim=-1).topk(k, dim=-1)
    return top, torch.cat([ids, rest], dim=-1).gather(-1, at)


def _cpu(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.float().cpu()
