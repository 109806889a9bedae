"""Run a Plan: the source run once, baselines, then the rows in chunks, each row with its own
units (its own layer, positions and head) so one forward pass holds many grid cells."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nbvene.engine.hooks import Hooks
from nbvene.engine.metrics import metric_values
from nbvene.errors import NbveneError
from nbvene.plan.plan import Plan, Row, Unit
from nbvene.plan.prompts import Prompt, pad
from nbvene.sites import Site

Progress = Callable[[int, int], None]
"""Called after each chunk with (rows done, rows in all)."""


@dataclass
class Outcome:
    """What a run measured: one value per row (or collected units), and the baselines."""

    values: torch.Tensor
    clean: torch.Tensor | None
    corrupted: torch.Tensor | None


def device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def execute(plan: Plan, *, max_batch: int = 32, progress: Progress | None = None) -> Outcome:
    """Run every row of the plan; returns per-row values in row order."""
    runner = _Runner(plan)
    with torch.no_grad():
        return runner.run(max_batch, progress)


class _Runner:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.model = plan.model
        self.device = device_of(plan.model)
        self.cache: dict[Site, torch.Tensor] = {}
        self.means: dict[tuple[int, Site], torch.Tensor] = {}

    # --- the whole run -------------------------------------------------------------------

    def run(self, max_batch: int, progress: Progress | None) -> Outcome:
        plan = self.plan
        clean_logits = self.source_run()
        self.mean_runs()
        noise = self.noise()
        metric = plan.metric
        clean = corrupted = None
        if metric is not None:
            base_rows = [
                Row(e, (), (), k)
                for e in range(len(plan.base))
                for k in range(plan.corrupt.samples if plan.corrupt else 1)
            ]
            base_logits = self.forward(base_rows, noise)
            reference = (
                clean_logits[[plan.source_example(r.example) for r in base_rows]]
                if (clean_logits is not None)
                else None
            )
            corrupted = self.per_example(metric_values(metric, base_logits, reference), base_rows)
            if clean_logits is not None:
                clean = metric_values(metric, clean_logits, clean_logits)
                if len(clean) == 1 and len(plan.base) > 1:
                    clean = clean.expand(len(plan.base))
        chunks = [plan.rows[i : i + max_batch] for i in range(0, len(plan.rows), max_batch)]
        values, done = [], 0
        for chunk in chunks:
            if plan.collect is not None:
                values.append(self.collect(chunk, noise))
            else:
                logits = self.forward(chunk, noise)
                reference = None
                if clean_logits is not None:
                    reference = clean_logits[[plan.source_example(r.example) for r in chunk]]
                values.append(metric_values(metric, logits, reference).float().cpu())
            done += len(chunk)
            if progress is not None:
                progress(done, len(plan.rows))
        out = torch.cat(values) if values else torch.empty(0)
        if metric is not None and metric.normalized and plan.collect is None:
            per_row_clean = clean[[r.example for r in plan.rows]].cpu()
            per_row_corr = corrupted[[r.example for r in plan.rows]].cpu()
            out = (out - per_row_corr) / (per_row_clean - per_row_corr)
        return Outcome(out, _cpu(clean), _cpu(corrupted))

    def per_example(self, values: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        """Average over noise samples: one value per example."""
        n = len(self.plan.base)
        total = torch.zeros(n, dtype=torch.float32, device=values.device)
        count = torch.zeros(n, dtype=torch.float32, device=values.device)
        index = torch.tensor([r.example for r in rows], device=values.device)
        total.index_add_(0, index, values.float())
        count.index_add_(0, index, torch.ones_like(values, dtype=torch.float32))
        return total / count

    # --- the runs before the grid ----------------------------------------------------------

    def source_run(self) -> torch.Tensor | None:
        """Collect the source activations every unit needs; return the source's logits."""
        plan = self.plan
        if plan.source is None:
            return None
        sites = {u.site for r in plan.rows for u in r.units if plan.ops[u.op].source == "run"}
        self.cache = self.collect_sites(plan.source, sites)
        rows = [Row(i, (), ()) for i in range(len(plan.source))]
        return self.forward(rows, None, prompts=plan.source)

    def collect_sites(self, prompts: list[Prompt], sites) -> dict[Site, torch.Tensor]:
        stored: dict[Site, torch.Tensor] = {}
        if not sites:
            return stored
        ids, mask = pad(prompts, self.plan.pad_id, self.device)
        with Hooks(self.model) as hooks:
            for site in sites:
                hooks.on(site.module, site.io, _store(site, stored, ids.shape))
            self.model(input_ids=ids, attention_mask=mask)
        return stored

    def mean_runs(self) -> None:
        plan = self.plan
        for index, op in enumerate(plan.ops):
            if op.source != "mean":
                continue
            sites = {u.site for r in plan.rows for u in r.units if u.op == index}
            prompts = list(op.mean_prompts)
            acts = self.collect_sites(prompts, sites)
            real = pad(prompts, plan.pad_id, self.device)[1].bool()
            for site, act in acts.items():
                self.means[index, site] = act[real].mean(dim=0)

    def noise(self) -> dict[tuple[int, int], torch.Tensor] | None:
        """ROME's corruption: one noise draw per (example, sample), the same for every cell."""
        c = self.plan.corrupt
        if c is None:
            return None
        width = self.model.get_input_embeddings().weight.shape[1]
        generator = torch.Generator().manual_seed(c.seed)
        draws = {}
        for example, positions in enumerate(c.positions):
            for sample in range(c.samples):
                z = torch.randn((len(positions), width), generator=generator)
                draws[example, sample] = c.std * z
        return draws

    # --- patched runs ----------------------------------------------------------------------

    def forward(self, rows: list[Row], noise, prompts: list[Prompt] | None = None):
        """Logits at each row's read position (the last token), with the rows' units applied."""
        prompts = prompts if prompts is not None else self.plan.base
        chosen = [prompts[r.example] for r in rows]
        ids, mask = pad(chosen, self.plan.pad_id, self.device)
        read = torch.tensor([p.read_at for p in chosen], device=self.device)
        with Hooks(self.model) as hooks:
            self.hook_units(hooks, rows, ids.shape)
            if noise is not None and prompts is self.plan.base:
                self.hook_noise(hooks, rows, noise)
            head = (
                self.model.get_output_embeddings()
                if hasattr(self.model, "get_output_embeddings")
                else None
            )
            if head is not None:
                hooks.on(head, "input", lambda h: h[torch.arange(len(rows)), read].unsqueeze(1))
            output = self.model(input_ids=ids, attention_mask=mask)
        logits = output.logits if hasattr(output, "logits") else output
        if head is not None:
            return logits[:, -1]
        return logits[torch.arange(len(rows)), read]

    def collect(self, rows: list[Row], noise) -> torch.Tensor:
        chosen = [self.plan.base[r.example] for r in rows]
        ids, mask = pad(chosen, self.plan.pad_id, self.device)
        found: dict[int, torch.Tensor] = {}
        with Hooks(self.model) as hooks:
            self.hook_units(hooks, rows, ids.shape, found)
            if noise is not None:
                self.hook_noise(hooks, rows, noise)
            self.model(input_ids=ids, attention_mask=mask)
        counts = {len(found[i]) for i in range(len(rows))}
        if len(counts) > 1:
            raise NbveneError(
                "collect: the examples have different numbers of positions",
                line=self.plan.ops[self.plan.collect].line,
                hint="collect one position per example (e.g. pos=-1), or one example at a time",
            )
        stacked = torch.stack([found[i] for i in range(len(rows))]).float().cpu()
        return stacked.squeeze(1) if counts == {1} else stacked

    def hook_units(self, hooks: Hooks, rows: list[Row], shape, found=None) -> None:
        groups: dict[tuple[Site, int], list[tuple[int, Unit]]] = defaultdict(list)
        for i, row in enumerate(rows):
            for unit in row.units:
                groups[unit.site, unit.op].append((i, unit))
        for (site, op_index), members in groups.items():
            edit = self.edit(site, op_index, members, rows, shape, found)
            hooks.on(site.module, site.io, edit)

    def edit(self, site: Site, op_index: int, members, rows, shape, found):
        """The hook edit for one (site, op): gather the rows' units, apply the op, put back."""
        plan, op = self.plan, self.plan.ops[op_index]
        row_idx, pos, head, src_row, src_pos, owner = [], [], [], [], [], []
        for i, unit in members:
            for b, s in zip(unit.base_pos, unit.source_pos, strict=True):
                row_idx.append(i)
                pos.append(b)
                head.append(unit.head)
                src_row.append(plan.source_example(rows[i].example))
                src_pos.append(s)
                owner.append(i)
        by_head = head[0] is not None
        index = [torch.tensor(row_idx, device=self.device), torch.tensor(pos, device=self.device)]
        if by_head:
            index.append(torch.tensor(head, device=self.device))
        source = None
        if op.source == "run":
            cached = self.cache[site]
            src_index = [torch.tensor(src_row), torch.tensor(src_pos)]
            if by_head:
                src_index.append(torch.tensor(head))
            source = cached[tuple(i.to(cached.device) for i in src_index)]
        elif op.source == "vector":
            source = op.vector.to(self.device)
        elif op.source == "mean":
            source = self.means[op_index, site]
            if by_head:
                source = source[torch.tensor(head, device=self.device)]

        def edit(raw: torch.Tensor) -> torch.Tensor:
            flat = raw.dim() == 2 and raw.shape[0] == shape[0] * shape[1]
            x = raw.unflatten(0, shape) if flat else raw
            units = site.view.read(x)
            chosen = units[tuple(index)]
            base = chosen.flatten(1)
            src = None
            if source is not None:
                src = (
                    source.to(base.dtype).reshape(-1, base.shape[1])
                    if source.dim() > 1
                    else (source.to(base.dtype))
                )
                src = src.expand_as(base) if src.dim() == 1 or src.shape[0] == 1 else src
                src = src.reshape(base.shape)
            new = op.module(base, src)
            if found is not None and op.verb == "collect":
                for i in set(owner):
                    found[i] = chosen[[k for k, o in enumerate(owner) if o == i]]
                return None
            units = units.index_put(tuple(index), new.reshape(chosen.shape).to(units.dtype))
            out = site.view.write(x, units)
            return out.flatten(0, 1) if flat else out

        return edit

    def hook_noise(self, hooks: Hooks, rows: list[Row], noise) -> None:
        positions = self.plan.corrupt.positions
        row_idx, pos, values = [], [], []
        for i, row in enumerate(rows):
            for k, p in enumerate(positions[row.example]):
                row_idx.append(i)
                pos.append(p)
                values.append(noise[row.example, row.sample][k])
        index = (torch.tensor(row_idx, device=self.device), torch.tensor(pos, device=self.device))
        added = torch.stack(values).to(self.device)

        def edit(embeds: torch.Tensor) -> torch.Tensor:
            return embeds.index_put(index, added.to(embeds.dtype), accumulate=True)

        hooks.on(self.model.get_input_embeddings(), "output", edit)


def _store(site: Site, stored: dict, shape):
    def edit(raw: torch.Tensor) -> None:
        flat = raw.dim() == 2 and raw.shape[0] == shape[0] * shape[1]
        x = raw.unflatten(0, shape) if flat else raw
        stored[site] = site.view.read(x).detach()

    return edit


def _cpu(x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else x.float().cpu()
