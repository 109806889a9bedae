"""The forward pass training needs: some examples of a Plan (one row each), their source run, then
the base run with the interventions, giving the output at each example's read position, with
gradients (the engine's runs are for measuring, under `torch.no_grad()`)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import replace

import torch

from nbvene.bind import resolve
from nbvene.bind.plan import Plan
from nbvene.engine.edits import Sources, base_edits
from nbvene.engine.executor import Executor
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.engine.multisource import clean_runs, patched_runs, read_sites, source_run, unit_means
from nbvene.errors import NbveneError
from nbvene.interventions.trainable import Trainable
from nbvene.spec import Metric, Spec


def plan_examples(spec: Spec, model, tokenizer, namespace, sites) -> Plan:
    """The plan of a spec that is trained or measured by its label: the engine's checks need a
    metric, which is never computed here, so a spec without one gets a stand-in."""
    if spec.metric is None:
        spec = replace(spec, metric=Metric("logit", (0,)))
    return resolve(spec, model, tokenizer, namespace, sites)


def check_trainable(plan: Plan, what: str = "nv.train") -> None:
    """A plan training can use: one row per example, nothing swept, no noise, nothing collected."""
    spec = plan.spec
    swept = [a.name for a in plan.axes if a.name != "example"]
    if swept:
        stmt = next(s for s in spec.interventions if any(s.selector(a) for a in swept))
        raise NbveneError(
            f"{what} fits one intervention per example, and this spec sweeps {', '.join(swept)}",
            line=stmt.line,
            text=spec.line_text(stmt.line),
            hint="choose one value: layer=3 instead of layer=*, pos=-1 instead of pos=*",
        )
    if plan.corrupt is not None:
        line = spec.corrupt.line
        raise NbveneError(
            f"{what} takes a source: line, not corrupt:",
            line=line,
            text=spec.line_text(line),
            hint="give the clean prompts as source: and the corrupted ones as base:",
        )
    for op in plan.ops:
        if getattr(op.module, "per_example", False):  # Forward renumbers the examples of a batch
            raise NbveneError(
                f"{what} takes no per-example dims (one list of units per base prompt)",
                line=op.line,
                text=spec.line_text(op.line),
                hint="give one list for all examples, dims=[0, 3], or measure with nv.run",
            )
        if isinstance(op.module, Trainable) and op.module.needs_source and plan.source is None:
            raise NbveneError(
                f"{op.module.kind}(...) needs a source",
                line=op.line,
                text=spec.line_text(op.line),
                hint="add a source: line",
            )
    if plan.collect is not None:
        stmt = spec.interventions[plan.collect]
        raise NbveneError(
            f"{what} takes no collect:",
            line=stmt.line,
            text=spec.line_text(stmt.line),
            hint="collect activations with nv.run",
        )


class Forward:
    """`forward(indices)`: the intervened output of those examples, (len(indices), classes).

    With `grad_source`, gradients also flow through the source run (interchange intervention
    training, when the model itself learns). The examples of one call run in one forward pass
    (the caller chooses how many, through its `Budget`); the `mean:` runs, made once, run in
    `budget`'s chunks."""

    def __init__(self, plan: Plan, *, grad_source: bool = False, budget: Budget | None = None):
        self.plan = plan
        self.model = plan.model
        self.executor = Executor(plan.model, plan.pad_id)
        self.grad_source = grad_source
        self.keep: list[Hooks] | None = None
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
