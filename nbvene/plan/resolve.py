"""Spec + model → Plan. Every check happens here, before anything runs."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from nbvene import interventions as iv
from nbvene.errors import NbveneError, did_you_mean
from nbvene.plan import limits
from nbvene.plan.noise import embedding_std
from nbvene.plan.plan import Axis, CorruptPlan, MetricPlan, Op, Plan, Row, Unit
from nbvene.plan.prompts import Prompt, from_ids, from_values, tokenize
from nbvene.sites import Component, SiteMap
from nbvene.spec import (
    All,
    Batch,
    Call,
    Index,
    Intervention,
    Last,
    Mapped,
    SelectorVar,
    Span,
    Spec,
    Text,
    TokenText,
    Var,
    is_steering,
    is_swept,
    selector_text,
)

AXIS_ORDER = ("layer", "pos", "head")
_MODULES = {
    "patch": iv.Interchange,
    "restore": iv.Interchange,
    "add": iv.Add,
    "subtract": iv.Subtract,
    "zero": iv.Zero,
    "collect": iv.Collect,
}


def resolve(
    spec: Spec,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: SiteMap | Mapping[str, str] | None = None,
    max_cells: int = limits.MAX_CELLS,
) -> Plan:
    """Bind a spec to a model, checking everything: sites, selectors, prompts, metric, and
    that it lays out at most `max_cells` patched runs."""
    return _Resolver(spec, model, tokenizer, namespace, sites, max_cells).plan()


def error_at(
    spec: Spec, message: str, line: int, hint: str | None = None, token: str | None = None
) -> NbveneError:
    """An error on a spec line, the caret under `token` (else under the line's first word)."""
    text = spec.line_text(line)
    column = None
    if token is not None and token in text:
        column = text.index(token)
    elif text:
        column = len(text) - len(text.lstrip())
    return NbveneError(message, line=line, text=text or None, column=column, hint=hint)


@dataclass(frozen=True)
class _Statement:
    """A spec statement bound to the model: its op, component and per-axis selectors."""

    spec: Intervention
    op: int
    component: Component
    heads: int | None


def _check_arguments(tokenizer, namespace, sites) -> None:
    """The keyword arguments that come with a spec are of the kinds they must be."""
    if tokenizer is not None and not callable(tokenizer):
        raise NbveneError(
            f"tokenizer must be a tokenizer, got {type(tokenizer).__name__}",
            hint="pass the model's own, e.g. AutoTokenizer.from_pretrained(...), or None",
        )
    if namespace is not None and not isinstance(namespace, Mapping):
        raise NbveneError(
            f"namespace must map names to values, got {type(namespace).__name__}",
            hint="pass namespace={'prompts': prompts}, or namespace=globals()",
        )
    if sites is not None and not isinstance(sites, SiteMap | Mapping):
        raise NbveneError(
            f"sites must map component names to module paths, got {type(sites).__name__}",
            hint='pass e.g. sites={"block_output": "blocks[{layer}].output"}',
        )


class _Resolver:
    def __init__(self, spec, model, tokenizer, namespace, sites, max_cells=limits.MAX_CELLS):
        _check_arguments(tokenizer, namespace, sites)
        self.spec, self.model, self.tokenizer = spec, model, tokenizer
        self.namespace = dict(namespace or {})
        self.max_cells = max_cells
        self.sites = sites if isinstance(sites, SiteMap) else SiteMap(model, sites)
        self.named: dict[str, list[Prompt]] = {}

    # --- errors -------------------------------------------------------------------------

    def error(self, message: str, line: int, hint: str | None = None, token: str | None = None):
        return error_at(self.spec, message, line, hint, token)

    def placed(self, e: NbveneError, line: int, token: str | None = None) -> NbveneError:
        if e.line is not None:
            return e
        return self.error(e.message, line, e.hint, token)

    # --- the whole plan -----------------------------------------------------------------

    def plan(self) -> Plan:
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
        batched = isinstance(spec.base, Batch) or self._is_list(spec.base)
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
        )
        if plan.estimate == "attribution":
            from nbvene.engine.attribution import check

            check(plan)
        return plan

    # --- prompts ------------------------------------------------------------------------

    def _is_list(self, prompts) -> bool:
        if not isinstance(prompts, Var):
            return False
        value = self.namespace.get(prompts.name)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dim() >= 2  # float inputs: the last axis holds the features
        return isinstance(value, list | tuple) or (
            isinstance(value, torch.Tensor) and value.dim() == 2
        )

    def lookup(self, var: Var, line: int):
        if var.name not in self.namespace:
            raise self.error(
                f"{{{var.name}}} is not defined",
                line,
                hint=f"pass namespace={{'{var.name}': ...}} to nv.run, or define it in a notebook",
                token="{" + var.name + "}",
            )
        return self.namespace[var.name]

    def prompts(self, prompts, line: int) -> list[Prompt]:
        """The prompts of a base:, source: or over= value, each checked to fit the model."""
        found = self.read_prompts(prompts, line)
        for prompt in found:
            self.fits(prompt, line)
        return found

    def fits(self, prompt: Prompt, line: int) -> None:
        """A prompt fits the model's context window."""
        window = limits.context(self.model)
        if window is not None and len(prompt) > window:
            raise self.error(
                f"the prompt has {len(prompt)} tokens, and the model takes at most {window}",
                line,
                hint="shorten the prompt",
            )

    def read_prompts(self, prompts, line: int) -> list[Prompt]:
        if isinstance(prompts, Batch):
            return [p for item in prompts.items for p in self.read_prompts(item, line)]
        if isinstance(prompts, Text):
            return [self.prompt(prompts.value, line)]
        value = self.lookup(prompts, line)
        if isinstance(value, str):
            return [self.prompt(value, line)]
        if isinstance(value, torch.Tensor) and value.is_floating_point() and self.takes_ids:
            raise self.error(
                f"{{{prompts.name}}} holds {value.dtype} numbers, and the model takes token ids",
                line,
                hint=f"give token ids as an integer tensor: {prompts.name}.long(), or text",
                token="{" + prompts.name + "}",
            )
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() <= 3:
            # inputs of a model that takes vectors: (features,), (batch, features) or
            # (batch, seq, features); a (batch, features) row is one position
            return [from_values(r) for r in (value.unsqueeze(0) if value.dim() == 1 else value)]
        if isinstance(value, torch.Tensor):
            if value.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
                raise self.error(
                    f"{{{prompts.name}}} must hold token ids (an integer tensor) or float "
                    "inputs (features, batch × features or batch × seq × features)",
                    line,
                )
            rows = value.unsqueeze(0) if value.dim() == 1 else value
            self.check_ids(value, prompts.name, line)
            return [from_ids(r, self.tokenizer) for r in rows]
        if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            return [self.prompt(v, line) for v in value]
        raise self.error(
            f"{{{prompts.name}}} must be a prompt, a list of prompts or a tensor of token ids; "
            f"got {type(value).__name__}",
            line,
        )

    @property
    def takes_ids(self) -> bool:
        return limits.vocabulary(self.model) is not None

    def check_ids(self, ids: torch.Tensor, name: str, line: int) -> None:
        """Token ids given as a tensor: one or two axes, each id in the model's vocabulary."""
        vocabulary = limits.vocabulary(self.model)
        bad = None
        if ids.dim() not in (1, 2) or ids.numel() == 0:
            bad = f"{{{name}}} has shape {tuple(ids.shape)}"
        elif ids.min() < 0:
            bad = f"{{{name}}} holds the token id {int(ids.min())}"
        elif vocabulary is not None and ids.max() >= vocabulary:
            bad = f"{{{name}}} holds the token id {int(ids.max())}"
        if bad is not None:
            upper = f"0..{vocabulary - 1}" if vocabulary is not None else "0 or more"
            raise self.error(
                f"{bad}; token ids go {upper}",
                line,
                hint="give (tokens,) or (examples, tokens) ids in the model's vocabulary",
                token="{" + name + "}",
            )

    def prompt(self, text: str, line: int) -> Prompt:
        try:
            return tokenize(self.tokenizer, text)
        except NbveneError as e:
            raise self.placed(e, line) from None

    def sources(self, base: list[Prompt]) -> list[Prompt] | None:
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
        tok = self.tokenizer
        for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
            value = getattr(tok, name, None)
            if isinstance(value, int):
                return value
        return 0

    # --- corruption and metric -------------------------------------------------------------

    def corruption(self, base: list[Prompt]) -> CorruptPlan | None:
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

    def metric(self, has_source: bool) -> MetricPlan | None:
        from nbvene.spec.metrics import lookup  # the merge moves this to the top

        m = self.spec.metric
        if m is None:
            return None
        found = lookup(m.name)
        if found is None:  # a Spec built by hand: the parser knows the registered names
            raise self.error(f"unknown metric {m.name!r}", m.line)
        ids = tuple(self.token_id(arg, m.line) for arg in m.args)
        if m.normalized and not has_source:
            raise self.error(
                "normalized needs a clean run to compare with",
                m.line,
                hint="add a source: or a corrupt: line, or drop 'normalized'",
                token="normalized",
            )
        if found.needs_clean and not has_source:
            raise self.error(
                f"{m.name} compares with the clean run: the spec needs a source: or corrupt: line",
                m.line,
            )
        return MetricPlan(m.name, ids, m.normalized)

    def token_id(self, text: str | int, line: int) -> int:
        if isinstance(text, int):
            return self.output_id(text, line)
        if self.tokenizer is None:
            raise self.error(
                f"the metric token {text!r} needs a tokenizer",
                line,
                hint="pass tokenizer=..., or name the output index: p(42)",
                token=f'"{text}"',
            )
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i]) for i in ids]
            raise self.error(
                f"{text!r} is {len(ids)} tokens for this tokenizer: {pieces}",
                line,
                hint="the metric reads one next token; pick a word that is a single token, "
                'often with a leading space, e.g. " Paris"',
                token=f'"{text}"',
            )
        return self.output_id(ids[0], line)

    def output_id(self, index: int, line: int) -> int:
        """A metric's token id (or class index): one of the scores the model outputs."""
        size = limits.outputs(self.model)
        if index < 0 or (size is not None and index >= size):
            upper = f"0..{size - 1}" if size is not None else "0 or more"
            raise self.error(
                f"the metric reads output {index}, and the model's outputs go {upper}",
                line,
                hint='name a token id in the vocabulary, or the token\'s text: p(" Paris")',
                token=str(index),
            )
        return index

    # --- statements ----------------------------------------------------------------------

    def statements(self, base, source) -> tuple[list[Op], list[_Statement]]:
        ops, statements = [], []
        for stmt in self.spec.interventions:
            try:
                component = self.sites.resolve(stmt.component)
            except NbveneError as e:
                raise self.placed(e, stmt.line, stmt.component) from None
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

    def origin(self, stmt: Intervention, source):
        """The prompts a statement's values come from: its `from` source, or the source: line."""
        return self.named[stmt.source] if stmt.source is not None else source

    def op(self, stmt: Intervention, base, source) -> Op:
        line = stmt.line
        if isinstance(stmt.via, Call):  # via rotated(k=1): the trainable family, built here
            from nbvene.train.interventions import build

            args = {k: self.lookup(v, line) if isinstance(v, Var) else v for k, v in stmt.via.args}
            try:
                module = build(stmt.via.name, args)
            except NbveneError as e:
                raise self.placed(e, line, stmt.via.name + "(") from None
            if module.needs_source and source is None:
                raise self.error(
                    f"{stmt.via.name}(...) needs a source", line, hint="add a source: line"
                )
            self.check_per_example(module, base, line, stmt.via.name + "(")
            return Op(stmt.verb, module, "run" if module.needs_source else None, line)
        if stmt.via is not None:
            value = self.lookup(stmt.via, line)
            try:
                module = iv.as_intervention(value)
            except TypeError as e:
                raise self.error(str(e), line, token="{" + stmt.via.name + "}") from None
            self.check_per_example(module, base, line, "{" + stmt.via.name + "}")
            needs = getattr(module, "needs_source", True) and source is not None
            return Op(stmt.verb, module, "run" if needs else None, line)
        if stmt.verb in ("add", "subtract") and stmt.by is not None:
            vector = self.lookup(stmt.by.vector, line)
            if not isinstance(vector, torch.Tensor):
                raise self.error(
                    f"{{{stmt.by.vector.name}}} must be a tensor, got {type(vector).__name__}",
                    line,
                )
            module = _MODULES[stmt.verb]()
            return Op(stmt.verb, module, "vector", line, vector=vector * stmt.by.scale)
        if stmt.verb == "mean":
            prompts = self.prompts(stmt.over, line) if stmt.over is not None else base
            return Op("mean", iv.Interchange(), "mean", line, mean_prompts=tuple(prompts))
        module = _MODULES[stmt.verb]()
        if stmt.verb in ("patch", "restore", "add", "subtract") and source is None:
            hint = (
                'add a source: line (or corrupt: noise 3σ on "subject")'
                if stmt.verb in ("patch", "restore")
                else "add a source: line, or give a vector: by {vector}"
            )
            raise self.error(f"{stmt.verb}: needs a source", line, hint=hint, token=stmt.verb)
        return Op(stmt.verb, module, "run" if module.needs_source else None, line)

    def check_axes(self, s: _Statement) -> None:
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

    # --- the grid ------------------------------------------------------------------------

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

    def ints(
        self, selector, axis: str, line: int, heads: int | None = None, check=None
    ) -> list[int]:
        """The integers a swept layer/head/pos selector stands for; `check` raises on the first
        value of a range out of bounds, as the range is laid out."""
        if isinstance(selector, All):
            return list(range(self.sites.n_layers if axis == "layer" else heads))
        if isinstance(selector, Span):
            if selector.stop < selector.start:
                raise self.error(
                    f"the range {selector.start}..{selector.stop} is empty",
                    line,
                    hint="ranges include both ends and go upwards: 3..5 is 3, 4, 5",
                    token=f"{selector.start}..{selector.stop}",
                )
            values = []
            for value in range(selector.start, selector.stop + 1):
                if check is not None:
                    check(value)  # stops a range such as 0..10**18 at the first bad value
                values.append(value)
            return values
        return list(selector.items)

    def layer(self, value: int, stmt: Intervention) -> int:
        n = self.sites.n_layers
        if not -n <= value < n:
            raise self.error(
                f"layer {value} is out of range: the model has {n} layers (0..{n - 1})",
                stmt.line,
                hint=f"use layer=0..{n - 1} or layer=*",
                token="layer=",
            )
        return value % n

    def head(self, value: int, s: _Statement) -> int:
        n = s.heads
        if not -n <= value < n:
            kind = (
                "key/value heads"
                if "key" in s.component.name
                or ("value_output" in (s.component.name) and "attention" not in s.component.name)
                else "heads"
            )
            raise self.error(
                f"head {value} is out of range: {s.spec.component} has {n} {kind} (0..{n - 1})",
                s.spec.line,
                hint=f"use head=0..{n - 1} or head=*",
                token="head=",
            )
        return value % n

    def swept_positions(self, selector, base: list[Prompt], stmt: Intervention):
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

    def position(self, selector, prompt: Prompt, stmt: Intervention) -> int:
        match selector:
            case Last():
                return len(prompt) - 1
            case Index(value):
                if not -len(prompt) <= value < len(prompt):
                    raise self.error(
                        f"pos={value} is past the prompt, which has {len(prompt)} tokens: "
                        f"{list(prompt.tokens)}",
                        stmt.line,
                        hint=f"positions go from 0 to {len(prompt) - 1}, or -1 for the last",
                        token="pos=",
                    )
                return value % len(prompt)
        raise TypeError(selector)  # pragma: no cover

    def find(self, prompt: Prompt, text: str, line: int) -> list[int]:
        """The positions of the tokens that make up `text` in the prompt."""
        found = prompt.find(text)
        if not found:
            raise self.error(
                f"{text!r} is not in the prompt {prompt.text!r}; its tokens are "
                f"{list(prompt.tokens)}",
                line,
                hint="write the text exactly as it appears in the prompt",
                token=f'"{text}"',
            )
        return found

    def fixed_positions(self, selector, prompt: Prompt, example: int, stmt: Intervention):
        """The positions of a non-swept pos= selector (several for a token text)."""
        match selector:
            case None:
                return list(range(len(prompt)))
            case TokenText(text):
                return self.find(prompt, text, stmt.line)
            case SelectorVar(name):
                value = self.lookup(Var(name), stmt.line)
                if isinstance(value, int) and not isinstance(value, bool):
                    value = [value]
                if (
                    isinstance(value, list | tuple)
                    and value
                    and all(isinstance(v, list | tuple) for v in value)
                ):
                    value = value[example]  # one list per example: ragged locations
                if (
                    not isinstance(value, list | tuple)
                    or not value
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                ):
                    raise self.error(
                        f"pos={{{name}}} must be an int, a list of ints, or one list of ints "
                        f"per example; got {value!r}",
                        stmt.line,
                        token="{" + name + "}",
                    )
                return [self.position(Index(v), prompt, stmt) for v in value]
            case _:
                return [self.position(selector, prompt, stmt)]

    # --- rows ----------------------------------------------------------------------------

    def rows(self, statements, axes, values, base, source, corrupt) -> list[Row]:
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

    def units(self, s: _Statement, at, values, example, prompt, src, swept_in=None) -> list[Unit]:
        stmt = s.spec
        layer_sel, pos_sel, head_sel = (stmt.selector(a) for a in AXIS_ORDER)
        # layers
        if layer_sel is None:  # a raw path, or a hook name with its layer (blocks.3.hook_…)
            layers = [None] if s.component.raw else [self.layer(s.component.layer, stmt)]
        elif is_swept(layer_sel):
            layers = [values["layer"][at["layer"]]]
        else:
            layers = [self.layer(self._single(layer_sel, stmt, "layer"), stmt)]
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
                if swept_in is not None and swept_in is not prompt:  # into a source's run
                    base_pos = self.aligned(base_pos, swept_in, prompt, stmt)
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
            head = self.head(self._single(head_sel, stmt, "head"), s)
        return [
            Unit(
                s.op, self.sites.site(s.component, layer), tuple(base_pos), tuple(source_pos), head
            )
            for layer in layers
        ]

    def _single(self, selector, stmt: Intervention, axis: str) -> int:
        if isinstance(selector, Index):
            return selector.value
        if isinstance(selector, SelectorVar):
            value = self.lookup(Var(selector.name), stmt.line)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        raise self.error(
            f"{axis}={selector_text(selector)} is not a single {axis}",
            stmt.line,
            hint=f"use an integer, or a sweep such as {axis}=* or {axis}=[1, 2]",
            token=f"{axis}=",
        )

    def aligned(self, base_pos, prompt: Prompt, src: Prompt, stmt: Intervention) -> list[int]:
        """Source positions for base positions, aligned from the end of the prompts."""
        shift = len(src) - len(prompt)
        out = [p + shift for p in base_pos]
        if any(not 0 <= p < len(src) for p in out):
            raise self.error(
                f"base ({len(prompt)} tokens) and source ({len(src)} tokens) differ in length, "
                "and aligning them from the end leaves some positions without a source",
                stmt.line,
                hint="map positions explicitly with pos=a->b (base a takes source b)",
                token="pos=" if stmt.selector("pos") is not None else None,
            )
        return out
