"""The runs before the patched ones: the source run, named sources (`source s1: ...`) and the
`mean:` runs. A named source that nothing patches runs once, clean; a source patched `into`
runs once per row, with that row's patches, before the base."""

from __future__ import annotations

import torch

from nbvene.bind.plan import Plan, Row
from nbvene.engine.edits import Sources, group_units, store_edit, unit_edit
from nbvene.engine.executor import Executor
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.sites import Site


def read_sites(plan: Plan, name: str | None, rows: list[Row]) -> set[Site]:
    """The sites whose units statements `from name` read, in `rows` (`name` None: the units
    read from the source run)."""
    return {
        u.site
        for r in rows
        for u in r.units
        if plan.ops[u.op].origin == name and plan.ops[u.op].value == "run"
    }


def source_run(
    plan: Plan,
    sources: Sources,
    executor: Executor,
    *,
    read: bool = False,
    budget: Budget | None = None,
    grad: bool = False,
    keep: list[Hooks] | None = None,
) -> torch.Tensor | None:
    """Run the source prompts, keeping in `sources.cache` the units the rows read from them
    (in `budget`'s chunks, or one pass); with `read`, return the source's outputs at its read
    positions. With `grad`, the kept units carry their gradients (IIT)."""
    sites = read_sites(plan, None, plan.rows)
    logits, stored = executor.stored(
        list(plan.source), sites, "source run", budget=budget, read=read, grad=grad, keep=keep
    )
    sources.cache.update(stored)
    return logits


def clean_runs(
    plan: Plan,
    sources: Sources,
    executor: Executor,
    *,
    grad: bool = False,
    keep: list[Hooks] | None = None,
    budget: Budget | None = None,
):
    """Run each named source that nothing patches, keeping the units its readers need (one
    entry per source prompt, in the budget's chunks); with `grad`, gradients flow through them
    (IIT). `keep`: see `Hooks`."""
    serial = set(plan.serial())
    for name, prompts in plan.named.items():
        if name in serial:
            continue
        grad = grad and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            _, stored = executor.stored(
                list(prompts),
                read_sites(plan, name, plan.rows),
                f"run of source {name}",
                budget=budget or Budget(),
                grad=grad,
                keep=keep,
            )
        sources.named.update({(name, site): units for site, units in stored.items()})


def patched_runs(
    plan: Plan,
    sources: Sources,
    rows: list[Row],
    executor: Executor,
    keep: list[Hooks] | None = None,
) -> None:
    """For the rows of one forward pass, run each patched named source in order (one prompt a
    row), with the rows' patches `into` it, keeping per row the units that later runs read."""
    sources.per_row.update(plan.serial())
    for name in plan.serial():
        prompts = [plan.named[name][plan.named_example(name, r.example)] for r in rows]
        shape = (len(rows), max(len(p) for p in prompts))
        stored: dict[Site, torch.Tensor] = {}
        read = read_sites(plan, name, rows)
        with Hooks(plan.model, keep) as hooks:
            # edits first: a hook sees what the hooks registered before it returned, so the
            # kept units are the patched ones
            patched = set()
            for (site, op), members in group_units(rows).items():
                if plan.ops[op].into == name:
                    hooks.at(site, unit_edit(plan, sources, site, op, members, rows, shape))
                    patched.add(site)
            for site in read:
                hooks.at(site, store_edit(site, stored, shape, detach=False))
            # every edit still runs (one may raise), and the pass stops after the last of them
            stop = () if keep is not None else read | patched
            executor.forward(prompts, read=False, stop_after=stop)
        sources.named.update({(name, site): units for site, units in stored.items()})


def unit_means(
    plan: Plan, executor: Executor, budget: Budget | None = None
) -> dict[tuple[int, Site], torch.Tensor]:
    """For each `mean:` op, the mean of its sites' units over the real tokens of its prompts
    (run in the budget's chunks)."""
    means = {}
    for index, op in enumerate(plan.ops):
        if op.value != "mean":
            continue
        sites = {u.site for r in plan.rows for u in r.units if u.op == index}
        prompts = list(op.mean_prompts)
        _, acts = executor.stored(prompts, sites, "mean: run", budget=budget or Budget())
        width = max(len(p) for p in prompts)
        device = executor.device
        real = torch.tensor([[t < len(p) for t in range(width)] for p in prompts], device=device)
        for site, act in acts.items():
            means[index, site] = act[real.to(act.device)].mean(dim=0)
    return means
