"""The forward pass training needs: some examples of a Plan (one row each), their source run, then
the base run with the interventions, giving the output at each example's read position, with
gradients (the engine's runs are for measuring, under `torch.no_grad()`). With `reuse`, what a
frozen model gives every step alike is run once (`Reused`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace

import torch

from nbvene.bind.plan import Plan
from nbvene.engine.edits import Sources, base_edits
from nbvene.engine.executor import Executor
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.engine.multisource import clean_runs, patched_runs, read_sites, source_run, unit_means
from nbvene.train.reuse import Reused, reusable


class Forward:
    """`forward(indices)`: the intervened output of those examples, (len(indices), classes).

    With `grad_source`, gradients also flow through the source run (interchange intervention
    training, when the model itself learns). The examples of one call run in one forward pass
    (the caller chooses how many, through its `Budget`); the `mean:` runs, made once, run in
    `budget`'s chunks.

    `reuse` (for many calls on a frozen model, without `grad_source`): every example's source
    units and base block inputs below the intervened layer are made at the first call, in
    `budget`'s chunks, and each call starts its base rows at that layer (the same values within
    float rounding; plans with noise or named sources run in full)."""

    def __init__(
        self,
        plan: Plan,
        *,
        grad_source: bool = False,
        budget: Budget | None = None,
        reuse: bool = False,
    ):
        self.plan = plan
        self.model = plan.model
        self.executor = Executor(plan.model, plan.pad_id)
        self.grad_source = grad_source
        self.keep: list[Hooks] | None = None
        self.budget = budget
        self.reuse = reuse and not grad_source and reusable(plan)
        self.reused: Reused | None = None
        with torch.no_grad():
            self.means = unit_means(plan, self.executor, budget)

    def __len__(self) -> int:
        return len(self.plan.base)

    def __call__(self, indices: Sequence[int]) -> torch.Tensor:
        plan = self.plan
        indices = list(indices)
        rows = [replace(plan.rows[i], example=j) for j, i in enumerate(indices)]
        base = [plan.base[i] for i in indices]
        source = plan.source
        if source is not None and len(source) > 1:
            source = [source[i] for i in indices]
        named = {n: [p[i] for i in indices] if len(p) > 1 else p for n, p in plan.named.items()}
        part = replace(plan, base=base, source=source, rows=rows, named=named)
        if self.reuse and self.keep is None:
            return self._reused(part, rows, indices)
        sources = Sources(part, self.executor.device)
        sources.means = self.means
        grad = self.grad_source and torch.is_grad_enabled()
        if source is not None and read_sites(part, None, rows):
            # the source activations the units read (with their gradients, if asked)
            with torch.set_grad_enabled(grad):
                source_run(part, sources, self.executor, grad=grad, keep=self.keep)
        clean_runs(part, sources, self.executor, grad=grad, keep=self.keep)
        patched_runs(part, sources, rows, self.executor, self.keep)
        with Hooks(self.model, self.keep) as hooks:
            base_edits(part, sources, rows, hooks, (len(rows), max(len(p) for p in base)))
            return self.executor.forward(base)

    def _reused(self, part: Plan, rows, indices: list[int]) -> torch.Tensor:
        """The step from what the first call ran once (`Reused`)."""
        if self.reused is None:
            self.reused = Reused(self.plan, self.executor, self.budget)
        sources = self.reused.part_sources(part, indices)
        sources.means = self.means
        with Hooks(self.model) as hooks:
            if self.reused.tail is None:
                base_edits(part, sources, rows, hooks, (len(rows), max(len(p) for p in part.base)))
                return self.executor.forward(part.base)
            base_edits(part, sources, rows, hooks, (len(rows), self.reused.width))
            return self.reused.forward(part, rows, indices)

    @contextmanager
    def kept(self):
        """Hooks made inside stay until the block ends: for a forward and its backward pass
        under gradient checkpointing, which runs the blocks' forward again."""
        self.keep = []
        try:
            yield
        finally:
            for hooks in self.keep:
                hooks.remove()
            self.keep = None
