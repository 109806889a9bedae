"""`Rerun`: what a Result keeps to re-run one of its cells (a heatmap click). It holds the model
weakly, so a Result kept in a notebook's Out cache does not keep the model's memory; once the
model is deleted, re-running says so.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

from nbvene.bind.plan import Plan
from nbvene.engine.lock import holding
from nbvene.engine.run import CellLogits, cell_logits
from nbvene.errors import NbveneError


@dataclass(frozen=True)
class CellRun:
    """One cell run again: its logits, the base example it belongs to, and the tokenizer that
    reads them (None for models without one)."""

    logits: CellLogits
    example: int
    tokenizer: object


class Rerun:
    """`rerun(index) -> CellRun`: the patched runs of the grid cell at `index` (all its noise
    samples) with their logits. `per_panel`: the Result stacks several runs (causal_trace's
    panels), one plan per index of its first axis."""

    def __init__(self, plans: Sequence[Plan], tokenizer=None, *, per_panel: bool = False):
        model = plans[0].model
        self._model: weakref.ref[nn.Module] = weakref.ref(model)
        self._plans = [_detached(p) for p in plans]
        self.tokenizer = tokenizer
        self.per_panel = per_panel

    @classmethod
    def panels(cls, reruns: Sequence[Rerun]) -> Rerun:
        """One Rerun for a Result that stacks others' values along a new first axis."""
        made = copy.copy(reruns[0])
        made._plans = [plan for r in reruns for plan in r._plans]
        made.per_panel = True
        return made

    @property
    def model(self) -> nn.Module | None:
        """The model, or None once it has been deleted."""
        return self._model()

    def __call__(self, index: Sequence[int]) -> CellRun:
        model = self._model()
        if model is None:
            raise NbveneError(
                "the model this Result ran on has been deleted, so its cells cannot run again",
                hint="load the model and re-run the cell that made this Result",
            )
        index = tuple(index)
        plan = self._plans[index[0] if self.per_panel else 0]
        if self.per_panel:
            index = index[1:]
        rows = [i for i, r in enumerate(plan.rows) if tuple(r.cell) == index]
        if not rows:
            raise NbveneError(f"no patched run for cell {index}")
        plan = _attached(plan, model)
        with holding(model, "re-running a cell"):
            logits = cell_logits(plan, rows)
        return CellRun(logits, plan.rows[rows[0]].example, self.tokenizer)

    def __repr__(self) -> str:
        state = "model deleted" if self._model() is None else "model alive"
        return f"Rerun({len(self._plans)} plan(s), {state})"


def _detached(plan: Plan) -> Plan:
    """The plan without its model (and its site map without the model either)."""
    sites = copy.copy(plan.sites)
    sites.model = None
    return replace(plan, model=None, sites=sites)


def _attached(plan: Plan, model: nn.Module) -> Plan:
    sites = copy.copy(plan.sites)
    sites.model = model
    return replace(plan, model=model, sites=sites)
