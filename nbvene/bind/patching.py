"""A patching spec bound to one model: `resolve(spec, model, ...)` → `Plan` (sources, ops,
grid axes and rows). Every check happens here, before anything runs."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from nbvene.bind import limits
from nbvene.bind.binder import Binder
from nbvene.bind.noise import embedding_std
from nbvene.bind.plan import Axis, CorruptPlan, MemoryModel, Op, Plan, Row, Unit, ValueKind
from nbvene.bind.prompts import Prompt
from nbvene.errors import NbveneError, did_you_mean, error_at
from nbvene.interventions import Add, Collect, Interchange, Subtract, Zero, as_intervention
from nbvene.interventions.trainable import build
from nbvene.sites import Component, SiteMap
from nbvene.spec import (
    All,
    Batch,
    Call,
    Edit,
    Index,
    Mapped,
    Spec,
    Text,
    Var,
    is_steering,
    is_swept,
    selector_text,
)

AXIS_ORDER = ("layer", "pos", "head")
ATTRIBUTION = ("patch", "restore")
"""The statements `estimate: attribution` estimates."""
_MODULES = {
    "patch": Interchange,
    "restore": Interchange,
    "add": Add,
    "subtract": Subtract,
    "zero": Zero,
    "collect": Collect,
}


def resolve(
    spec: Spec,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: SiteMap | Mapping[str, str] | None = None,
    max_cells: int = limits.MAX_CELLS,
    memory: MemoryModel | None = None,
) -> Plan:
    """Bind a spec to a model, checking everything: sites, selectors, prompts, metric, and
    that it lays out at most `max_cells` patched runs. `memory` is the estimate of the engine
    that will run it, for `Plan.describe`."""
    return Patching(spec, model, tokenizer, namespace, sites, max_cells, memory).plan()


@dataclass(frozen=True)
class _Statement:
    """A spec statement bound to the model: its op, component and per-axis selectors."""

    spec: Edit
    op: int
    component: Component
    heads: int | None


class Patching(Binder):
    """The binder of a patching spec; `plan()` lays it out as a `Plan`."""

    def __init__(
        self, spec, model, tokenizer, namespace, sites, max_cells=limits.MAX_CELLS, memory=None
    ):
        super().__init__(spec, model, tokenizer, namespace, sites)
        self.max_cells = max_cells
        self.memory = memory
        self.named: dict[str, list[Prompt]] = {}
        """Named sources, once read (`plan()`)."""

    def plan(self) -> Plan:
        """The whole spec bound: prompts, sources, noise, ops, the grid and its rows."""
        spec = self.spec
        if is_steering(spec):
            raise NbveneError(
                "this is a steering spec: it binds with nv.run (a metric) or nv.generate (text)",
                hint="nv.plan and nv.train take patching specs (patch:, restore:, zero:, ...)",
            )
        if spec.base is None:
            raise NbveneError(
                "the spec has no base: statement",
                hint='add a line such as: base: "The Eiffel Tower is located in the city of"',
            )
        if not spec.interventions:
            raise NbveneError(
                "the spec has no intervention",
                hint="add e.g. 'patch: block_output layer=* pos=-1' or 'collect: ...'",
            )
        base = self.prompts(spec.base, spec.lines.get("base", 0))
        batched = isinstance(spec.base, Batch) or self.is_list(spec.base)
        source = self.sources(base)
        named = self.named_sources(base)
        corrupt = self.corruption(base)
        self.named = named
        ops, statements = self.statements(base, source)
        collects = [s for s in statements if s.spec.verb == "collect"]
        if len(collects) > 1:
            raise self.error("more than one collect: statement", collects[1].spec.line)
        if source is None and named:  # the first named source is the clean run
            source = next(iter(named.values()))
        metric = self.metric(source is not None)
        if metric is None and not collects:
            raise NbveneError(
                "the spec has no metric: statement",
                hint='add e.g. metric: p(" Paris")  or  metric: logit_diff(" Paris", " Rome")',
            )
        axes, values = self.grid(statements, base, batched)
        rows = self.rows(statements, axes, values, base, source, corrupt)
        plan = Plan(
            spec=spec,
            model=self.model,
            sites=self.sites,
            base=base,
            source=source,
            ops=ops,
            axes=axes,
            rows=rows,
            metric=metric,
            corrupt=corrupt,
            collect=collects[0].op if collects else None,
            pad_id=self._pad_id(),
            batched=batched,
            estimate=spec.estimate,
            named=named,
            memory=self.memory,
        )
        if plan.estimate == "attribution":
            check_attribution(plan)
        return plan

    def sources(self, base: list[Prompt]) -> list[Prompt] | None:
        """The `source:` prompts (one, or one per base prompt); the base itself under noise."""
        spec = self.spec
        if spec.source is None:
            return base if spec.corrupt is not None else None
        if spec.corrupt is not None:
            raise self.error(
                "corrupt: and source: together",
                spec.lines["source"],
                hint="with corrupt:, the source is the clean base; drop the source: line",
            )
        source = self.prompts(spec.source, spec.lines["source"])
        if len(source) not in (1, len(base)):
            raise self.error(
                f"{len(source)} source prompts for {len(base)} base prompts",
                spec.lines["source"],
                hint="give one source, or one per base prompt",
            )
        return source

    def named_sources(self, base: list[Prompt]) -> dict[str, list[Prompt]]:
        """`source s1: ...` lines, each read by some `from s1`, ordered so that a source's run
        comes after the runs patched into it (`into`), with no cycle."""
        spec = self.spec
        if not spec.sources:
            self.check_source_names({})
            return {}
        if spec.corrupt is not None:
            raise self.error(
                "corrupt: and named sources together",
                spec.sources[0].line,
                hint="with corrupt:, the source is the clean base; name sources without corrupt:",
            )
        found = {}
        for s in spec.sources:
            prompts = self.prompts(s.prompts, s.line)
            if len(prompts) not in (1, len(base)):
                raise self.error(
                    f"{len(prompts)} prompts in source {s.name} for {len(base)} base prompts",
                    s.line,
                    hint="give one source prompt, or one per base prompt",
                )
            found[s.name] = prompts
        self.check_source_names(found)
        for stmt in spec.interventions:
            reads = stmt.verb in ("patch", "restore") or (
                stmt.verb in ("add", "subtract") and stmt.by is None and stmt.via is None
            )
            if reads and stmt.source is None and spec.source is None:
                raise self.error(
                    f"{stmt.verb}: which source? The spec names its sources",
                    stmt.line,
                    hint=f"add from {spec.sources[0].name} (or another source's name)",
                    token=stmt.verb,
                )
        for s in spec.sources:
            if not any(stmt.source == s.name for stmt in spec.interventions):
                patched = any(stmt.into == s.name for stmt in spec.interventions)
                raise self.error(
                    f"source {s.name} is patched but never read"
                    if patched
                    else f"source {s.name} is never used",
                    s.line,
                    hint=f"take values from it: patch: ... from {s.name}",
                    token=s.name,
                )
        return {name: found[name] for name in self._run_order([s.name for s in spec.sources])}

    def check_source_names(self, found: Mapping[str, list[Prompt]]) -> None:
        """Every `from s1` / `into s1` names a `source s1:` line."""
        for stmt in self.spec.interventions:
            for key in ("from", "into"):
                name = stmt.source if key == "from" else stmt.into
                if name is not None and name not in found:
                    raise self.error(
                        f"no source is named {name!r}",
                        stmt.line,
                        hint=did_you_mean(name, found)
                        or ("sources: " + ", ".join(found) if found else None)
                        or f'add a line: source {name}: "..."',
                        token=f"{key} {name}",
                    )

    def _run_order(self, names: list[str]) -> list[str]:
        """Named sources in an order where every `from a into b` runs a before b."""
        stmts = [st for st in self.spec.interventions if st.into is not None]
        order: list[str] = []
        while len(order) < len(names):
            ready = [
                n
                for n in names
                if n not in order
                and all(st.source is None or st.source in order for st in stmts if st.into == n)
            ]
            if not ready:
                stuck = next(
                    st
                    for st in stmts
                    if st.into not in order and st.source is not None and st.source not in order
                )
                raise self.error(
                    f"the sources patch each other in a cycle ({stuck.source} into {stuck.into})",
                    stuck.line,
                    hint="each source's run may take values only from sources that come before it",
                    token=f"into {stuck.into}",
                )
            order.append(ready[0])
        return order

    def _pad_id(self) -> int:
        """The id padding uses: the tokenizer's pad, end-of-text or unknown token, else 0."""
        tok = self.tokenizer
        for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
            value = getattr(tok, name, None)
            if isinstance(value, int):
                return value
        return 0

    def corruption(self, base: list[Prompt]) -> CorruptPlan | None:
        """`corrupt: noise 3σ on "subject"`: the subject's positions in each prompt and the
        noise's standard deviation."""
        c = self.spec.corrupt
        if c is None:
            return None
        subject = c.subject.value if isinstance(c.subject, Text) else self.lookup(c.subject, c.line)
        if not isinstance(subject, str):
            raise self.error(
                f"{{{c.subject.name}}} must be the subject's text, got {type(subject).__name__}",
                c.line,
                hint='noise goes on the tokens of a text in the prompt: on "Eiffel Tower"',
                token="{" + c.subject.name + "}",
            )
        positions = [tuple(self.find(prompt, subject, c.line)) for prompt in base]
        if c.scale < 0 or not self.takes_ids:
            raise self.error(
                f"noise {c.scale:g}: a scale of 0 or more, on the token embeddings"
                if c.scale < 0
                else "corrupt: adds noise to token embeddings, and the model has none",
                c.line,
                hint='write e.g. corrupt: noise 3σ on "subject"',
            )
        sigma = embedding_std(self.model) if c.relative else None
        std = c.scale * sigma if c.relative else c.scale
        return CorruptPlan(std, tuple(positions), c.samples, c.seed, sigma)

    def statements(self, base, source) -> tuple[list[Op], list[_Statement]]:
        """Each intervention statement as an op, with its component and axes checked."""
        ops, statements = [], []
        for stmt in self.spec.interventions:
            try:
                component = self.sites.resolve(stmt.component)
            except NbveneError as e:
                raise self.error(e, stmt.line, token=stmt.component) from None
            origin = self.origin(stmt, source)
            op = replace(self.op(stmt, base, origin), origin=stmt.source, into=stmt.into)
            ops.append(op)
            statements.append(
                _Statement(stmt, len(ops) - 1, component, self.sites.heads(component))
            )
            self.check_axes(statements[-1])
        return ops, statements

    def check_per_example(self, module, base, line: int, token: str) -> None:
        """interchange(dims=[[...], ...]) has one list of units per base prompt."""
        if getattr(module, "per_example", False) and len(module.dims) != len(base):
            raise self.error(
                f"dims gives {len(module.dims)} lists of units for {len(base)} base prompts",
                line,
                token=token,
                hint="give one list per base prompt, or one flat list for all: dims=[0, 3]",
            )

    def origin(self, stmt: Edit, source):
        """The prompts a statement's values come from: its `from` source, or the source: line."""
        return self.named[stmt.source] if stmt.source is not None else source

    def op(self, stmt: Edit, base, source) -> Op:
        """The statement's intervention module and the value it takes."""
        line = stmt.line
        if isinstance(stmt.via, Call):  # via rotated(k=1): the trainable family, built here
            args = {k: self.lookup(v, line) if isinstance(v, Var) else v for k, v in stmt.via.args}
            try:
                module = build(stmt.via.name, args)
            except NbveneError as e:
                raise self.error(e, line, token=stmt.via.name + "(") from None
            if module.needs_source and source is None:
                raise self.error(
                    f"{stmt.via.name}(...) needs a source", line, hint="add a source: line"
                )
            self.check_per_example(module, base, line, stmt.via.name + "(")
            return Op(stmt.verb, module, ValueKind.RUN if module.needs_source else None, line)
        if stmt.via is not None:
            value = self.lookup(stmt.via, line)
            try:
                module = as_intervention(value)
            except TypeError as e:
                raise self.error(str(e), line, token="{" + stmt.via.name + "}") from None
            self.check_per_example(module, base, line, "{" + stmt.via.name + "}")
            needs = getattr(module, "needs_source", True) and source is not None
            return Op(stmt.verb, module, ValueKind.RUN if needs else None, line)
        if stmt.verb in ("add", "subtract") and stmt.by is not None:
            vector = self.lookup(stmt.by.vector, line)
            if not isinstance(vector, torch.Tensor):
                raise self.error(
                    f"{{{stmt.by.vector.name}}} must be a tensor, got {type(vector).__name__}",
                    line,
                )
            module = _MODULES[stmt.verb]()
            return Op(stmt.verb, module, ValueKind.VECTOR, line, vector=vector * stmt.by.scale)
        if stmt.verb == "mean":
            prompts = self.prompts(stmt.over, line) if stmt.over is not None else base
            return Op("mean", Interchange(), ValueKind.MEAN, line, mean_prompts=tuple(prompts))
        module = _MODULES[stmt.verb]()
        if stmt.verb in ("patch", "restore", "add", "subtract") and source is None:
            hint = (
                'add a source: line (or corrupt: noise 3σ on "subject")'
                if stmt.verb in ("patch", "restore")
                else "add a source: line, or give a vector: by {vector}"
            )
            raise self.error(f"{stmt.verb}: needs a source", line, hint=hint, token=stmt.verb)
        return Op(stmt.verb, module, ValueKind.RUN if module.needs_source else None, line)

    def check_axes(self, s: _Statement) -> None:
        """layer=, head= and window= are given where the component needs them, and only
        there."""
        stmt, line = s.spec, s.spec.line
        if stmt.selector("head") is not None and s.heads is None:
            raise self.error(
                f"head= needs a head-level site, and {stmt.component!r} is not one",
                line,
                hint="use e.g. head_attention_value_output, head_query_output (or z, q, k, v)",
                token="head=",
            )
        layered = self.sites.layered(s.component)
        if layered and stmt.selector("layer") is None:
            raise self.error(
                f"{stmt.component} needs layer=",
                line,
                hint=f"add layer=* to sweep all {self.sites.n_layers} layers, or layer=3",
            )
        if not layered and stmt.selector("layer") is not None:
            raise self.error(
                f"{stmt.component!r} names one module already: drop layer=",
                line,
                token="layer=",
            )
        if stmt.window is not None and stmt.selector("layer") is None:
            raise self.error("window= needs layer=", line, token="window=")
        if stmt.verb == "collect" and stmt.window is not None:
            raise self.error("collect: takes no window=", line, token="window=")

    def grid(self, statements, base, batched) -> tuple[list[Axis], dict[str, list]]:
        """Swept axes in the order layer, pos, head; values per axis (pos: per example)."""
        axes, values = [], {}
        if batched:
            axes.append(Axis("example", tuple(range(len(base)))))
        for axis in AXIS_ORDER:
            swept = [(s, s.spec.selector(axis)) for s in statements]
            swept = [(s, sel) for s, sel in swept if sel is not None and is_swept(sel)]
            if not swept:
                continue
            first_stmt, first = swept[0]
            for other_stmt, other in swept[1:]:
                if other != first:
                    raise self.error(
                        f"two statements sweep {axis}= differently "
                        f"({selector_text(first)} on line {first_stmt.spec.line}, "
                        f"{selector_text(other)} here)",
                        other_stmt.spec.line,
                        hint=f"one {axis}= axis is shared by all statements that sweep it",
                    )
            if axis == "layer":
                layer_of = functools.partial(self.layer, stmt=first_stmt.spec)
                wanted = self.ints(first, axis, first_stmt.spec.line, check=layer_of)
                layers = [layer_of(v) for v in wanted]
                values["layer"] = layers
                axes.append(Axis("layer", tuple(layers)))
            elif axis == "head":
                # one head axis for all statements that sweep it: in range for each of them
                head_of = functools.partial(self.head, s=first_stmt)
                wanted = self.ints(first, axis, first_stmt.spec.line, first_stmt.heads, head_of)
                heads = [head_of(h) for h in wanted]
                for other, _ in swept[1:]:
                    for h in wanted:
                        self.head(h, other)
                values["head"] = heads
                axes.append(Axis("head", tuple(heads)))
            else:
                per_example = self.swept_positions(first, base, first_stmt.spec)
                values["pos"] = per_example
                labels = tuple(base[0].tokens[p] for p in per_example[0])
                axes.append(Axis("pos", labels, tuple(per_example[0])))
        return axes, values

    def head(self, value: int, s: _Statement) -> int:
        """A head number, checked against the statement's component (a negative one counts
        from the end)."""
        n = s.heads
        if not -n <= value < n:
            kind = self.sites.head_kind(s.component)
            raise self.error(
                f"head {value} is out of range: {s.spec.component} has {n} {kind} (0..{n - 1})",
                s.spec.line,
                hint=f"use head=0..{n - 1} or head=*",
                token="head=",
            )
        return value % n

    def swept_positions(self, selector, base: list[Prompt], stmt: Edit):
        """Per example, the positions a swept pos= selector stands for."""
        if isinstance(selector, All):
            lengths = {len(p) for p in base}
            if len(lengths) > 1:
                raise self.error(
                    f"pos=* over prompts of different lengths ({sorted(lengths)} tokens)",
                    stmt.line,
                    hint="sweep positions on prompts of equal token length, or use pos=-3..-1",
                    token="pos=",
                )
            return [list(range(len(p))) for p in base]

        def check(value: int) -> None:
            for p in base:
                self.position(Index(value), p, stmt)

        wanted = self.ints(selector, "pos", stmt.line, check=check)
        return [[self.position(Index(i), p, stmt) for i in wanted] for p in base]

    def rows(self, statements, axes, values, base, source, corrupt) -> list[Row]:
        """One row per example, grid cell and noise sample, each with its units."""
        grid = [a for a in axes if a.name != "example"]
        samples = corrupt.samples if corrupt is not None else 1
        cells = math.prod(len(a.labels) for a in grid)
        self.check_size(statements, len(base), cells, samples)
        rows = []
        for example, prompt in enumerate(base):
            src = source[example if len(source) > 1 else 0] if source is not None else None
            for cell in itertools.product(*(range(len(a.labels)) for a in grid)):
                at = {a.name: i for a, i in zip(grid, cell, strict=True)}
                units = tuple(
                    u
                    for s in statements
                    for u in self.units(s, at, values, example, *self.runs(s, example, prompt, src))
                )
                full = (example, *cell) if axes and axes[0].name == "example" else cell
                rows.extend(Row(example, full, units, k) for k in range(samples))
        self.check_collect(statements, rows)
        return rows

    def check_size(self, statements, examples: int, cells: int, samples: int) -> None:
        """examples × grid cells × noise samples patched runs, within `max_cells`."""
        total = examples * cells * samples
        if total <= self.max_cells:
            return
        if samples > 1:
            line, token = self.spec.corrupt.line, "samples="
        else:
            swept = [s for s in statements if any(is_swept(sel) for _, sel in s.spec.where)]
            line, token = (swept or statements)[0].spec.line, None
        factors = [f"{examples:,} examples"] if examples > 1 else []
        factors.append(f"{cells:,} grid cells")
        factors += [f"{samples:,} noise samples"] if samples > 1 else []
        raise self.error(
            f"the plan takes {total:,} patched runs ({' × '.join(factors)}), more than "
            f"max_cells={self.max_cells:,}",
            line,
            hint="sweep fewer layers, positions, heads or samples; or raise the limit: "
            f"nv.run(..., max_cells={total}) (or nv.plan)",
            token=token,
        )

    def check_collect(self, statements, rows: list[Row]) -> None:
        """Collected units stack into one tensor: every row must collect as many positions."""
        for s in statements:
            if s.spec.verb != "collect":
                continue
            counts = {sum(len(u.base_pos) for u in r.units if u.op == s.op) for r in rows}
            if len(counts) > 1:
                counts = sorted(counts)
                raise self.error(
                    f"collect: the examples have different numbers of positions ({counts})",
                    s.spec.line,
                    hint="collect one position per example (pos=-1), or one example at a time",
                )

    def runs(self, s: _Statement, example: int, prompt: Prompt, src: Prompt | None):
        """The prompt of the run a statement changes, of the run it reads, and the base prompt
        (where swept positions are counted)."""
        stmt, named = s.spec, self.named
        if stmt.source is not None:
            src = named[stmt.source][example if len(named[stmt.source]) > 1 else 0]
        target = prompt
        if stmt.into is not None:
            target = named[stmt.into][example if len(named[stmt.into]) > 1 else 0]
        return target, src, prompt

    def units(self, s: _Statement, at, values, example, prompt, src, base_prompt) -> list[Unit]:
        """A statement's units in one row: in the run of `prompt` (the base's, or a named
        source's it changes), reading `src`; swept positions count in `base_prompt`."""
        stmt = s.spec
        layer_sel, pos_sel, head_sel = (stmt.selector(a) for a in AXIS_ORDER)
        # layers
        if layer_sel is None:  # a raw path, or a hook name with its layer (blocks.3.hook_…)
            layers = [None] if s.component.raw else [self.layer(s.component.layer, stmt)]
        elif is_swept(layer_sel):
            layers = [values["layer"][at["layer"]]]
        else:
            layers = [self.layer(self.single(layer_sel, stmt, "layer"), stmt)]
        if stmt.window is not None:
            n, w = self.sites.n_layers, stmt.window
            # ROME's window: layers l - w//2 .. l + ceil(w/2) - 1, clipped to the model
            layers = [k for c in layers for k in range(max(0, c - w // 2), min(n, c - (-w // 2)))]
        # positions
        if isinstance(pos_sel, Mapped):
            if src is None:
                raise self.error(
                    f"pos=a->b maps base positions to source positions, and {stmt.verb}: "
                    "reads no source here",
                    stmt.line,
                    hint="add a source: line, or give one position: pos=a",
                    token="->",
                )
            base_pos = [self.fixed_positions(pos_sel.base, prompt, example, stmt)[-1]]
            source_pos = [self.fixed_positions(pos_sel.source, src, example, stmt)[-1]]
        else:
            if pos_sel is not None and is_swept(pos_sel):
                base_pos = [values["pos"][example][at["pos"]]]
                if base_prompt is not prompt:  # into a named source's run
                    base_pos = self.aligned(base_pos, base_prompt, prompt, stmt)
            else:
                base_pos = self.fixed_positions(pos_sel, prompt, example, stmt)
            source_pos = self.aligned(base_pos, prompt, src, stmt) if src is not None else base_pos
        if src is not None and len(src) != len(prompt) and s.component.name == "attention_weight":
            raise self.error(
                f"attention_weight rows have one entry per key, and base ({len(prompt)} tokens) "
                f"and source ({len(src)} tokens) differ in length",
                stmt.line,
                hint="patch attention weights between prompts of equal token length",
            )
        # head
        if head_sel is None:
            head = None
        elif is_swept(head_sel):
            head = values["head"][at["head"]]
        else:
            head = self.head(self.single(head_sel, stmt, "head"), s)
        return [
            Unit(
                s.op, self.sites.site(s.component, layer), tuple(base_pos), tuple(source_pos), head
            )
            for layer in layers
        ]


def check_attribution(plan: Plan) -> None:
    """Raise unless attribution patching can estimate this plan: patch:/restore: statements
    taking the source run's activations, a metric, and no attention weights."""
    for stmt, op in zip(plan.spec.interventions, plan.ops, strict=True):
        if stmt.verb not in ATTRIBUTION:
            _unsupported(plan, f"{stmt.verb}: statements (line {stmt.line})")
        if stmt.via is not None or op.value != ValueKind.RUN:
            _unsupported(plan, f"'via' interventions (line {stmt.line})")
        if op.origin is not None or op.into is not None:
            _unsupported(plan, f"named sources (from/into, line {stmt.line})")
    for row in plan.rows:
        for unit in row.units:
            if unit.site.io == "weights" or unit.site.component == "attention_weight":
                _unsupported(plan, f"{unit.site.component} (attention weights)")
    if plan.metric is None:
        _unsupported(plan, "a spec without a metric")


def _unsupported(plan: Plan, what: str):
    raise error_at(
        plan.spec,
        f"estimate: attribution does not support {what}",
        plan.spec.lines.get("estimate", 0),
        hint="attribution patching estimates patch: and restore: sweeps; "
        "remove the estimate: line for an exact run",
    )
