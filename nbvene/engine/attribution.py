"""Attribution patching (`estimate: attribution`): a first-order estimate of a whole patching
sweep from one source run and one forward and backward pass of the base.

For a row that patches units u from the source, the estimate is

    metric(base) + Σ_u (a_source(u) − a_base(u)) · ∂metric/∂a(u)

with the gradient taken on the base run (the corrupted run under `corrupt: noise`, one per
noise sample, averaged like the exact sweep). Each site gets a zero tensor added to it that
requires grad, so `torch.autograd.grad` gives the total derivative at every site at once and
the model's parameters never accumulate a `.grad`.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from nbvene.bind.patching import check_attribution
from nbvene.bind.plan import Plan, Row
from nbvene.engine.edits import unflatten
from nbvene.engine.hooks import Hooks
from nbvene.engine.memory import Budget
from nbvene.engine.metrics import metric_values
from nbvene.engine.run import Outcome, Sweep
from nbvene.sites import Site


def estimate(plan: Plan, max_batch: int = 64) -> Outcome:
    """The estimated value of every row, in plan order (normalised if the metric asks), and the
    clean and corrupted baselines: the same Outcome `execute` returns. The source run and the
    base's forward and backward pass run `max_batch` rows at a time (halved on out-of-memory):
    each row's gradients are its own."""
    check_attribution(plan)
    sweep = Sweep(plan, start_at_layer=False, budget=Budget(max_batch))
    with torch.no_grad():
        clean_logits = sweep.source_run()
    base_rows = sweep.base_rows
    sites = {u.site for r in plan.rows for u in r.units}
    width = max(len(p) for p in plan.base)

    def base_pass(chunk: list[Row]):
        """The metric of the base rows `chunk`, and per site its units and their gradients."""
        shape = (len(chunk), width)
        acts: dict[Site, torch.Tensor] = {}
        deltas: dict[Site, torch.Tensor] = {}
        with torch.enable_grad(), Hooks(plan.model) as hooks:
            for site in sites:
                hooks.at(site, _grad_edit(site, acts, deltas))
            logits = sweep.logits(hooks, chunk, width=width)
            values = metric_values(plan.metric, logits, sweep.reference(clean_logits, chunk))
            order = list(deltas)
            wrt = [deltas[s] for s in order]
            grads = torch.autograd.grad(values.sum(), wrt, allow_unused=True)
        units = {}
        for site, g in zip(order, grads, strict=True):
            g = torch.zeros_like(deltas[site]) if g is None else g
            read = site.view.read
            units[site] = (read(unflatten(acts[site], shape)), read(unflatten(g, shape)))
        return values.detach().float(), units

    chunks = sweep.budget.chunks(base_rows, base_pass, "attribution's base pass")
    parts = [out for _, out in chunks]
    values = torch.cat([v for v, _ in parts])
    base_at = {s: torch.cat([u[s][0] for _, u in parts]) for s in parts[0][1]}
    grad_at = {s: torch.cat([u[s][1] for _, u in parts]) for s in parts[0][1]}
    del parts
    rows_in_base = sweep.in_base(plan.rows)
    total = values[torch.tensor(rows_in_base, device=values.device)].clone()
    for site, members in _by_site(plan, rows_in_base).items():
        if site not in grad_at:
            continue
        row, base_row, pos, src_row, src_pos, head = (
            torch.tensor(x, device=values.device) for x in zip(*members, strict=True)
        )
        at = (base_row, pos) if site.heads is None else (base_row, pos, head)
        src_at = (src_row, src_pos) if site.heads is None else (src_row, src_pos, head)
        source = sweep.sources.cache[site]
        source = source[tuple(i.to(source.device) for i in src_at)].float()
        diff = source.to(values.device) - base_at[site][at].float()
        total.index_add_(0, row, (diff * grad_at[site][at].float()).flatten(1).sum(-1))
    corrupted = sweep.per_example(values)
    clean = metric_values(plan.metric, clean_logits, clean_logits).float()
    clean = clean.expand(len(plan.base)) if len(clean) == 1 else clean
    return sweep.outcome(clean, corrupted, values=total.cpu())


def _grad_edit(site: Site, acts: dict, deltas: dict):
    """An edit that adds a zero that requires grad, and keeps the activation it saw."""

    def edit(raw: torch.Tensor) -> torch.Tensor:
        acts[site] = raw.detach()
        delta = torch.zeros_like(raw, requires_grad=True)
        deltas[site] = delta
        return raw + delta

    return edit


def _by_site(plan: Plan, rows_in_base: list[int]) -> dict[Site, list[tuple]]:
    """(row, base row, base position, source example, source position, head) per unit position,
    grouped by site."""
    groups: dict[Site, list[tuple]] = defaultdict(list)
    for i, row in enumerate(plan.rows):
        src = plan.source_example(row.example)
        for unit in row.units:
            for b, s in zip(unit.base_pos, unit.source_pos, strict=True):
                groups[unit.site].append((i, rows_in_base[i], b, src, s, unit.head or 0))
    return groups
