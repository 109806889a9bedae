"""The edits hooks apply: each gathers the units of the rows it serves, runs the op, and puts
the result back — one vectorised gather and scatter per (site, op) and forward pass."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch

from nbvene import interventions as iv
from nbvene.bind.plan import Op, Plan, Row, Unit
from nbvene.errors import NbveneError, UserCodeError, error_at
from nbvene.sites import Site


class Sources:
    """Activations the ops read: the source run's cache, named sources' runs, vectors, and
    means, on the device."""

    def __init__(self, plan: Plan, device: torch.device):
        self.plan, self.device = plan, device
        self.cache: dict[Site, torch.Tensor] = {}
        self.means: dict[tuple[int, Site], torch.Tensor] = {}
        self.named: dict[tuple[str, Site], torch.Tensor] = {}
        self.per_row: set[str] = set()
        """Named sources whose runs were patched: their units are kept per row, not per example."""

    def row(self, op_index: int, example: int, i: int) -> int:
        """Where the units op `op_index` reads for row `i` (of `example`) sit in its cache."""
        origin = self.plan.ops[op_index].origin
        if origin is None:
            return self.plan.source_example(example)
        return i if origin in self.per_row else self.plan.named_example(origin, example)

    def gather(self, op_index: int, site: Site, src_row, src_pos, head) -> torch.Tensor | None:
        op: Op = self.plan.ops[op_index]
        if op.value == "run":
            cached = self.cache[site] if op.origin is None else self.named[op.origin, site]
            index = [torch.tensor(src_row), torch.tensor(src_pos)]
            if head[0] is not None:
                index.append(torch.tensor(head))
            return cached[tuple(i.to(cached.device) for i in index)]
        if op.value == "vector":
            return op.vector
        if op.value == "mean":
            mean = self.means[op_index, site]
            return mean[torch.tensor(head, device=mean.device)] if head[0] is not None else mean
        return None


def group_units(rows: list[Row]) -> dict[tuple[Site, int], list[tuple[int, Unit]]]:
    """The units of a chunk, grouped by (site, op): one hook each."""
    groups: dict[tuple[Site, int], list[tuple[int, Unit]]] = defaultdict(list)
    for i, row in enumerate(rows):
        for unit in row.units:
            groups[unit.site, unit.op].append((i, unit))
    return groups


def base_edits(
    plan: Plan,
    sources: Sources,
    rows: list[Row],
    hooks,
    shape,
    found: dict | None = None,
    *,
    places: list[tuple[int, int]] | None = None,
    where: Callable[[Site], Site] | None = None,
) -> None:
    """Register the edits of `rows` that act in their base run (ids of `shape`) on `hooks`: every
    unit but those `into` a named source, made in that source's run before. `found` gathers
    what `collect:` units see. With `places`, the rows are laid out in lanes (`packed.Layout`):
    row i's position p sits at batch entry `places[i][0]`, position `places[i][1] + p`. With
    `where`, a site's edit applies where `where(site)` says (the same tensor elsewhere).

    Edits at one place apply in the statements' order, whichever rows a pass holds (a chunk's
    groups come in the order its rows first use them); edits moved by `where` come before
    that place's own, as they came before them in the model; edits of a sum with the block's
    input (`resid_mid`) come after the edits of that input and of the module's output, which
    the sum is made of."""

    def order(group) -> tuple[bool, bool, int]:
        (site, op), _ = group
        return (where is None or where(site) == site, site.residual is not None, op)

    for (site, op), members in sorted(group_units(rows).items(), key=order):
        if plan.ops[op].into is None:
            edit = unit_edit(plan, sources, site, op, members, rows, shape, found, places)
            hooks.at(where(site) if where else site, edit)


def unit_edit(
    plan: Plan,
    sources: Sources,
    site: Site,
    op_index: int,
    members,
    rows,
    shape,
    found: dict | None = None,
    places: list[tuple[int, int]] | None = None,
):
    """The edit for one (site, op) in one forward pass of `rows` (ids of `shape`; with
    `places`, laid out in lanes: see `base_edits`)."""
    op, device = plan.ops[op_index], sources.device
    row_idx, pos, head, src_row, src_pos, examples = [], [], [], [], [], []
    for i, unit in members:
        for b, s in zip(unit.base_pos, unit.source_pos, strict=True):
            lane, slot = places[i] if places else (i, 0)
            row_idx.append(lane)
            examples.append(rows[i].example)
            pos.append(slot + b)
            head.append(unit.head)
            src_row.append(sources.row(op_index, rows[i].example, i))
            src_pos.append(s)
    index = [torch.tensor(row_idx, device=device), torch.tensor(pos, device=device)]
    if head[0] is not None:
        index.append(torch.tensor(head, device=device))
    index = tuple(index)
    source = sources.gather(op_index, site, src_row, src_pos, head)
    # interchange(dims={per-example lists}) needs each unit row's base example
    per_example = (
        {"examples": torch.tensor(examples, device=device)}
        if getattr(op.module, "per_example", False)
        else {}
    )

    def edit(raw: torch.Tensor) -> torch.Tensor | None:
        x = unflatten(raw, shape)
        units = site.view.read(x)
        at = tuple(i.to(units.device) for i in index)  # the site's own device
        chosen = units[at]
        if found is not None and op.verb == "collect":
            for i in set(row_idx):
                found[i] = chosen[[k for k, r in enumerate(row_idx) if r == i]]
            return None
        base = chosen.flatten(1)
        src = source
        if src is not None and site.io == "weights" and src.shape[-1] != chosen.shape[-1]:
            src = _keys(src, chosen.shape[-1])
        given = None if src is None else _like(plan, src, base, op)
        new = _applied(plan, op, base, given, per_example)
        units = units.index_put(at, new.reshape(chosen.shape).to(units.device, units.dtype))
        out = site.view.write(x, units)
        return out.flatten(0, 1) if out.shape != raw.shape else out

    return edit


def _like(plan: Plan, source: torch.Tensor, base: torch.Tensor, op: Op) -> torch.Tensor:
    """The source shaped as the (n, d) base units: per unit, or one vector for all."""
    source = source.to(base.device, base.dtype)
    if source.numel() == base.shape[1]:
        return source.reshape(1, -1).expand_as(base)
    if source.numel() != base.numel():
        raise error_at(
            plan.spec,
            f"the vector has {source.numel()} numbers, and each unit here has {base.shape[1]}",
            op.line,
            hint="make the vector at the same site (and head) it is added to",
            token="by",
        )
    return source.reshape(base.shape)


def _applied(plan: Plan, op: Op, base: torch.Tensor, source, per_example: dict) -> torch.Tensor:
    """The op's new units. A user's own intervention (`via {f}`) that fails, or gives back
    something other than one value per unit, is reported on its spec line."""
    if not _users(op.module):
        try:
            return op.module(base, source, **per_example)
        except NbveneError as e:  # e.g. rotated(k=...) finds the site's width only now
            raise error_at(plan.spec, e, op.line, token="via") from None
    name = getattr(op.module, "fn", op.module)
    shown = getattr(name, "__name__", type(name).__name__)
    try:
        new = op.module(base, source, **per_example)
    except Exception as e:  # the user's code: any error, placed on the line that calls it
        message = f"via: {shown} raised {type(e).__name__}: {e}"
        raise error_at(plan.spec, UserCodeError(message), op.line, token="via") from e
    if not isinstance(new, torch.Tensor) or new.numel() != base.numel():
        got = f"shape {tuple(new.shape)}" if isinstance(new, torch.Tensor) else repr(new)[:40]
        raise error_at(
            plan.spec,
            f"via: {shown} gave back {got}, and it must give one value per unit: "
            f"shape {tuple(base.shape)}, like base",
            op.line,
            hint="an intervention takes (base, source) of shape (n, d) and returns (n, d)",
            token="via",
        )
    return new


def _users(module) -> bool:
    """Whether an op runs the user's code: a function, or a module nbvene does not define."""
    return isinstance(module, iv.Function) or not type(module).__module__.startswith("nbvene.")


def _keys(weights: torch.Tensor, width: int) -> torch.Tensor:
    """Attention rows (…, key) cut or zero-padded to `width` keys: a chunk is padded to its own
    longest prompt, and a key past a prompt's end has weight 0 (prompts are right-padded)."""
    if weights.shape[-1] > width:
        return weights[..., :width]
    return torch.nn.functional.pad(weights, (0, width - weights.shape[-1]))


def unflatten(raw: torch.Tensor, shape) -> torch.Tensor:
    """Some modules see (batch·seq, d) (OPT's MLP): give them back their (batch, seq) axes."""
    if raw.dim() == 2 and raw.shape[0] == shape[0] * shape[1]:
        return raw.unflatten(0, tuple(shape))
    return raw


def store_edit(site: Site, stored: dict, shape, *, detach: bool = True):
    """An edit that keeps the site's units and changes nothing; `detach=False` keeps their
    gradients (interchange intervention training)."""

    def edit(raw: torch.Tensor) -> None:
        units = site.view.read(unflatten(raw, shape))
        stored[site] = units.detach() if detach else units

    return edit


def noise_edit(plan: Plan, rows: list[Row], noise, device, offset: int = 0):
    """ROME's corruption: add each row's noise draw to its subject's token embeddings. The
    rows sit from batch row `offset` on (the rows before, a source run's, stay clean)."""
    positions = plan.corrupt.positions
    row_idx, pos, values = [], [], []
    for i, row in enumerate(rows, start=offset):
        for k, p in enumerate(positions[row.example]):
            row_idx.append(i)
            pos.append(p)
            values.append(noise[row.example, row.sample][k])
    index = (torch.tensor(row_idx, device=device), torch.tensor(pos, device=device))
    added = torch.stack(values).to(device)

    def edit(embeds: torch.Tensor) -> torch.Tensor:
        at = tuple(i.to(embeds.device) for i in index)  # the embeddings' own device
        # added in float32 and rounded once to the model's dtype (bf16, fp16)
        noisy = embeds.float().index_put(at, added.to(embeds.device), accumulate=True)
        return noisy.to(embeds.dtype)

    return edit
