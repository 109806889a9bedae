"""Multi-source runs: named sources (`source s1: ...`). A source that nothing patches runs once,
clean; a source patched `into` runs once per row, with that row's patches, before the base."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nbvene.bind.plan import Plan, Row
from nbvene.bind.prompts import pad
from nbvene.engine.edits import Sources, group_units, store_edit, unit_edit
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.engine.passes import head_at_one, kept_units
from nbvene.sites import Site


def read_sites(plan: Plan, name: str, rows: list[Row]) -> set[Site]:
    """The sites whose units statements `from name` read, in `rows`."""
    return {
        u.site
        for r in rows
        for u in r.units
        if plan.ops[u.op].origin == name and plan.ops[u.op].value == "run"
    }


def clean_runs(plan: Plan, sources: Sources, call: Callable, device, *, grad: bool = False,
               keep: list[Hooks] | None = None, budget: Budget | None = None):  # fmt: skip
    """Run each named source that nothing patches, keeping the units its readers need (one
    entry per source prompt, in the budget's chunks); with `grad`, gradients flow through them
    (IIT). `keep`: see `Hooks`."""
    serial = set(plan.serial())
    for name, prompts in plan.named.items():
        if name in serial:
            continue
        grad = grad and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            stored = kept_units(plan.model, list(prompts), read_sites(plan, name, plan.rows),
                                call, device, budget or Budget(), f"run of source {name}",
                                plan.pad_id, grad=grad, keep=keep)  # fmt: skip
        sources.named.update({(name, site): units for site, units in stored.items()})


def patched_runs(plan: Plan, sources: Sources, rows: list[Row], call: Callable, device,
                 keep: list[Hooks] | None = None) -> None:  # fmt: skip
    """For the rows of one forward pass, run each patched named source in order (one prompt a
    row), with the rows' patches `into` it, keeping per row the units that later runs read."""
    sources.per_row.update(plan.serial())
    for name in plan.serial():
        prompts = [plan.named[name][plan.named_example(name, r.example)] for r in rows]
        shape = (len(rows), max(len(p) for p in prompts))
        stored: dict[Site, torch.Tensor] = {}
        with Hooks(plan.model, keep) as hooks:
            # edits first: a hook sees what the hooks registered before it returned, so the
            # kept units are the patched ones
            for (site, op), members in group_units(rows).items():
                if plan.ops[op].into == name:
                    hooks.at(site, unit_edit(plan, sources, site, op, members, rows, shape))
            for site in read_sites(plan, name, rows):
                hooks.at(site, store_edit(site, stored, shape, detach=False))
            head_at_one(plan.model, hooks)
            call(*pad(prompts, plan.pad_id, device))
        sources.named.update({(name, site): units for site, units in stored.items()})
