"""What stays the same from one training step to the next: with the model frozen and no
gradient through the source run, every example's source units and its base run below the
intervened layer are the same at every step. `Reused` runs them once, for every example (the
source run stopped after its deepest site, the base run recording each block's input from the
intervened layer on, as the engine's `Tail` does for sweeps), and each step then starts its
base rows at that layer, from the recorded inputs, under the interventions."""

from __future__ import annotations

import torch

from nbvene.bind.plan import Plan, Row
from nbvene.engine.edits import Sources
from nbvene.engine.executor import Executor
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.engine.multisource import read_sites, source_run
from nbvene.engine.tail import Tail, start_layer

LIMIT = 1 << 30
"""Bytes the kept inputs and units may take (an estimate); beyond, every step runs in full."""


def reusable(plan: Plan) -> bool:
    """Whether a plan's steps can reuse what the frozen model gives every step alike: no noise,
    no named sources (their runs may be patched per row), prompts of token ids, and what is
    kept within `LIMIT`. The base prompts have one length, and so do the source prompts: a
    step then computes on tensors of the shapes it has without reuse (prompts of several
    lengths would be padded to the longest of all, not of the step, and float rounding would
    differ). One exception: as many examples as tokens, where a recorded argument with the
    prompt's length (cache positions) could not be told from one with a row per example."""
    if plan.corrupt is not None or plan.named:
        return False
    if any(p.values is not None for p in plan.base):
        return False
    widths = {len(p) for p in plan.base}
    if len(widths) > 1 or (plan.source is not None and len({len(p) for p in plan.source}) > 1):
        return False
    width = widths.pop()
    if width == len(plan.base):
        return False
    hidden = getattr(getattr(plan.model, "config", None), "hidden_size", None)
    if not isinstance(hidden, int):
        return False
    sites = len({u.site for r in plan.rows for u in r.units})
    return len(plan.base) * width * hidden * 4 * (1 + sites) <= LIMIT


class Reused:
    """The source units of every example, and (where the family allows starting at a layer)
    the base runs' block inputs from the first layer any row patches."""

    def __init__(self, plan: Plan, executor: Executor, budget: Budget | None):
        self.plan, self.executor = plan, executor
        budget = budget or Budget(len(plan.base))
        self.sources = Sources(plan, executor.device)
        with torch.no_grad():
            if plan.source is not None and read_sites(plan, None, plan.rows):
                source_run(plan, self.sources, executor, budget=budget)
        self.layer = min(start_layer(r) for r in plan.rows)
        self.width = len(plan.base[0])
        self.tail = None
        if self.layer > 0 and Tail.supports(plan.model, plan.sites):
            self.tail = self._record(budget)

    def _record(self, budget: Budget) -> Tail | None:
        tail = Tail(self.plan.model, self.plan.sites)
        tail.suffixes = False  # every position runs: no keys and values kept

        def run(chunk):
            with torch.no_grad(), Hooks(self.plan.model) as hooks:
                tail.record(hooks, {self.layer})
                self.executor.forward(chunk, width=self.width, read=False)
            tail.commit()

        for _ in budget.chunks(list(self.plan.base), run, "base run"):
            pass
        return tail if tail.merge() else None

    def part_sources(self, part: Plan, indices: list[int]) -> Sources:
        """The kept source units of the examples `indices`, as `part` (those examples) reads
        them."""
        sources = Sources(part, self.executor.device)
        one = self.plan.source is None or len(self.plan.source) == 1
        chosen = torch.tensor(indices)
        for site, units in self.sources.cache.items():
            sources.cache[site] = units if one else units[chosen.to(units.device)]
        return sources

    def forward(self, part: Plan, rows: list[Row], indices: list[int]) -> torch.Tensor:
        """The rows' outputs at their read positions, from the recorded block inputs on, under
        the edits the caller's hooks hold (made for rows `self.width` tokens wide)."""
        read = torch.tensor([p.read_at for p in part.base], device=self.executor.device)
        return self.tail.forward([self.layer] * len(rows), indices, read)
