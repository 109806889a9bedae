"""A steering spec bound to one model: each `steer:`/`add:`/`subtract:`/`zero:` statement as a
`Term` (site, positions, vector, strength), the prompt, the metric and the generation options.

Errors name the spec line, as `nv.plan` does for patching specs. A vector made from prompts
(`by mean_diff(...)`) needs forward passes: the caller gives the function that makes it."""

from __future__ import annotations

import enum
import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from nbvene.bind.binder import Binder
from nbvene.bind.plan import MetricPlan
from nbvene.bind.prompts import Prompt
from nbvene.errors import NbveneError, error_at
from nbvene.sites import Site, SiteMap
from nbvene.spec import (
    All,
    Batch,
    Contrast,
    Edit,
    Generate,
    Index,
    Items,
    Last,
    Phase,
    SelectorVar,
    Slider,
    Span,
    Spec,
    Strengths,
    Text,
    TokenText,
    Var,
)


class Region(str, enum.Enum):
    """The positions a term steers, named: every one, the prompt's, or the generated ones."""

    __str__ = str.__str__  # the value, as enum.StrEnum (Python 3.11+) gives it

    ALL = "all"
    PROMPT = "prompt"
    GENERATED = "generated"


Where = Region | tuple[int, ...]
"""Positions a term steers: a `Region`, or absolute positions."""

MakeVector = Callable[..., object]
"""How a vector is made from contrasting prompts: `nbvene.steer.vector`'s signature,
`(positive, negative, *, model, tokenizer, layer, site, method, normalize, sites)`, returning
something with `.values`."""


@dataclass(frozen=True)
class Term:
    """One steering statement bound to the model."""

    verb: str
    """"add" (steer:, add:, subtract: with the vector negated) or "zero"."""
    site: Site
    where: Where
    vector: torch.Tensor | None
    """(d,) added at each chosen position, or (k, d): one vector per position 0..k-1."""
    strength: float | Slider | Strengths
    line: int
    label: str

    def positions(self, start: int, count: int, prompt_length: int) -> list[int]:
        """Which of the positions start..start+count-1 (a forward pass's tokens) it steers."""
        span = range(start, start + count)
        if self.vector is not None and self.vector.dim() == 2:
            return [p for p in span if p < self.vector.shape[0]]
        if self.where == Region.ALL:
            return list(span)
        if self.where == Region.PROMPT:
            return [p for p in span if p < prompt_length]
        if self.where == Region.GENERATED:
            return [p for p in span if p >= prompt_length]
        return [p for p in span if p in self.where]

    def values(self, overrides: Mapping[int, float], index: int) -> list[float]:
        """The strengths its steered rows take (a slider's start unless overridden)."""
        if self.verb == "zero":
            return [1.0]
        if index in overrides:
            return [float(overrides[index])]
        if isinstance(self.strength, Slider):
            return [self.strength.start]
        if isinstance(self.strength, Strengths):
            return list(self.strength.values)
        return [float(self.strength)]


@dataclass
class Steering:
    """Everything a steered run needs; `rows()` lays out the baseline and steered rows."""

    spec: Spec
    model: nn.Module
    tokenizer: object
    prompt: Prompt
    terms: list[Term]
    metric: MetricPlan | None
    generate: Generate | None

    def steered(self, index: int, units: torch.Tensor, start: int, strengths: torch.Tensor):
        """Term `index` applied to the units (rows, tokens, d) of a forward pass whose first
        token is at absolute position `start`, at one strength per row (a `zero:` term zeroes
        the rows whose strength is not 0); None where it steers none of those tokens."""
        term = self.terms[index]
        chosen = term.positions(start, units.shape[1], len(self.prompt))
        if not chosen:
            return None
        local = torch.tensor([p - start for p in chosen], device=units.device)
        strength = strengths.to(units.device, units.dtype)
        if term.verb == "zero":
            keep = (strength == 0).to(units.dtype)[:, None, None]
            return units.index_copy(1, local, units[:, local] * keep)
        vector = term.vector.to(units.device, units.dtype)
        if vector.shape[-1] != units.shape[-1]:
            raise error_at(
                self.spec,
                f"the vector has {vector.shape[-1]} numbers, and each unit here has "
                f"{units.shape[-1]}",
                term.line,
                hint="make the vector at the same site (and head) it is added to",
                token="by",
            )
        if vector.dim() == 2:  # one vector per position
            vector = vector[torch.tensor(chosen, device=units.device)]
        added = strength[:, None, None] * vector.expand(len(chosen), -1)
        return units.index_add(1, local, added)

    def stop_reason(self, ids: list[int], eos: set[int]) -> str | None:
        """Why a row whose generated ids are `ids` stops after the last of them ("eos", or
        the `stop=` string its text now holds), or None if it goes on."""
        if ids[-1] in eos:
            return "eos"
        stops = self.generate.stop
        if stops and self.tokenizer is not None:
            text = self.tokenizer.decode(ids)
            for s in stops:
                if s in text:
                    return f"stop {s!r}"
        return None

    def eos_ids(self) -> set[int]:
        """The token ids that end generation: the tokenizer's and its generation config's."""
        found = getattr(self.tokenizer, "eos_token_id", None)
        config = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = set()
        for value in (found, config):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list | tuple):
                ids.update(v for v in value if isinstance(v, int))
        return ids

    @property
    def sliders(self) -> list[int]:
        """Indices of the terms whose strength is a slider."""
        return [i for i, t in enumerate(self.terms) if isinstance(t.strength, Slider)]

    @property
    def swept(self) -> int | None:
        """The term whose strength is swept (one result per value), if any."""
        found = [i for i, t in enumerate(self.terms) if isinstance(t.strength, Strengths)]
        return found[0] if found else None

    def rows(self, overrides: Mapping[int, float] | None = None) -> list[tuple[float, ...]]:
        """Row 0 unsteered (every strength 0), then one row per combination of strengths."""
        overrides = overrides or {}
        choices = [t.values(overrides, i) for i, t in enumerate(self.terms)]
        baseline = tuple(0.0 for _ in self.terms)
        return [baseline, *itertools.product(*choices)]


_STEERING_VERBS = ("steer", "add", "subtract", "zero")


def resolve_steering(
    spec: Spec,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites=None,
    *,
    make_vector: MakeVector,
) -> Steering:
    """Check a steering spec against a model and make its vectors (those from prompts with
    `make_vector`)."""
    if not isinstance(model, nn.Module):
        raise NbveneError(
            f"model must be a torch.nn.Module, got {type(model).__name__}",
            hint="load one with nv.models.load() or transformers' from_pretrained",
        )
    r = Binder(spec, model, tokenizer, namespace, sites)
    for keyword in ("source", "corrupt", "label"):
        if getattr(spec, keyword) is not None:
            raise r.error(
                f"a steering spec takes no {keyword}: line",
                spec.lines[keyword],
                hint="steering changes the base run by vectors; patching specs use source:",
            )
    if spec.estimate != "exact":
        raise r.error("a steering spec is run exactly", spec.lines["estimate"])
    prompt = _prompt(spec, r)
    generates = spec.generate is not None
    terms = [_term(stmt, r, prompt, generates, make_vector) for stmt in spec.interventions]
    swept = [t for t in terms if isinstance(t.strength, Strengths)]
    if len(swept) > 1:
        raise r.error(
            "two strength sweeps: a steering spec sweeps one strength",
            swept[1].line,
            hint="give the others a number or a slider(lo, hi, start)",
        )
    if spec.metric is None and spec.generate is None:
        raise NbveneError(
            "a steering spec needs metric: or generate:",
            hint='add e.g. metric: p(" happy")  or  generate: max_new_tokens=30',
        )
    metric = r.metric(False)
    return Steering(spec, model, tokenizer, prompt, terms, metric, spec.generate)


def _prompt(spec: Spec, r: Binder) -> Prompt:
    g = spec.generate
    if g is not None and g.prompt is not None and spec.base is not None:
        raise r.error(
            "the prompt is given twice: in base: and in generate:",
            g.line,
            hint="keep one of them",
        )
    if g is not None and g.prompt is not None:
        written, line = g.prompt, g.line
    else:
        written, line = spec.base, spec.lines.get("base", 0)
    if written is None:
        raise NbveneError(
            "the steering spec has no prompt",
            hint='add base: "I think that you are", or generate: "I think that you are"',
        )
    prompts = r.prompts(written, line)
    if len(prompts) != 1 or isinstance(written, Batch):
        raise r.error(
            f"steering runs one prompt at a time; got {len(prompts)}",
            line,
            hint="loop over your prompts in Python: nv.generate(spec, namespace={'p': p})",
        )
    if prompts[0].values is not None:
        raise r.error("steering needs a prompt of token ids (text)", line)
    return prompts[0]


def _term(stmt: Edit, r: Binder, prompt: Prompt, generates: bool, make_vector: MakeVector) -> Term:
    line = stmt.line
    if stmt.verb not in _STEERING_VERBS:
        raise r.error(
            f"{stmt.verb}: is not a steering statement",
            line,
            hint="a steering spec uses steer:, add:, subtract: (with by ...) and zero:",
            token=stmt.verb,
        )
    if stmt.via is not None or stmt.window is not None or stmt.selector("head") is not None:
        key = "via" if stmt.via is not None else "window=" if stmt.window else "head="
        raise r.error(f"{key} is not supported in a steering spec", line, token=key)
    if stmt.verb != "zero" and stmt.by is None:
        raise r.error(f"{stmt.verb}: needs a vector: by {{v}} * 2", line, token=stmt.verb)
    layer = _layer(stmt, r)
    try:
        site = steered_site(r.sites, stmt.component, layer)
    except NbveneError as e:
        raise r.error(e, line, token=stmt.component) from None
    where = _where(stmt, r, prompt, generates)
    if stmt.by is None:
        return Term("zero", site, where, None, 1.0, line, f"zero {stmt.component}")
    values, label = _vector(stmt, r, site, make_vector)
    if stmt.verb == "subtract":
        values = -values
    if values.dim() == 2:
        if stmt.selector("pos") not in (None, All(), Phase("prompt")):
            raise r.error(
                "a per-position vector (from diff) is added at positions 0..k-1: drop pos=",
                line,
                token="pos=",
            )
        if values.shape[0] > len(prompt):
            raise r.error(
                f"the per-position vector has {values.shape[0]} positions and the prompt "
                f"{len(prompt)} tokens",
                line,
                hint="make the vector from prompts no longer than the steered prompt",
            )
    shown = where if isinstance(where, str) else list(where)
    where_text = "" if where == Region.ALL else f" pos={shown}"
    label = f"{label} · {stmt.component} L{site.layer}{where_text}"
    return Term("add", site, where, values, stmt.by.scale, line, label)


def _layer(stmt: Edit, r: Binder) -> int | None:
    selector = stmt.selector("layer")
    if selector is None:
        return None
    if isinstance(selector, Span | Items | All):
        raise r.error(
            "a steering statement adds at one layer",
            stmt.line,
            hint="write one steer: line per layer",
            token="layer=",
        )
    return r.single(selector, stmt, "layer")


def _where(stmt: Edit, r: Binder, prompt: Prompt, generates: bool) -> Where:
    """The positions: every one (`*` or no pos=), a phase, or absolute positions (an integer
    counts from the prompt's start, a negative one from its end)."""
    selector = stmt.selector("pos")
    generated = r.spec.generate.max_new_tokens if generates else 0
    position = functools.partial(
        _steered_position, stmt=stmt, r=r, prompt=prompt, generated=generated
    )
    if selector is None or isinstance(selector, All):
        return Region.ALL
    if isinstance(selector, Phase):
        if selector.name == "generated" and not generates:
            raise r.error(
                "pos=generated needs a generate: line",
                stmt.line,
                hint="without generate:, only the prompt is run: use pos=* or pos=prompt",
                token="pos=",
            )
        return Region(selector.name)
    if isinstance(selector, Last | TokenText):
        found = r.fixed_positions(selector, prompt, 0, stmt)
        return tuple(found)
    if isinstance(selector, SelectorVar):
        wanted = r.lookup(Var(selector.name), stmt.line)
        wanted = [wanted] if isinstance(wanted, int) else wanted
        if not isinstance(wanted, list | tuple) or not all(isinstance(v, int) for v in wanted):
            raise r.error(f"pos={{{selector.name}}} must be an int or a list of ints", stmt.line)
    elif isinstance(selector, Index):
        wanted = [selector.value]
    elif isinstance(selector, Span):
        wanted = r.ints(selector, "pos", stmt.line, check=position)
    elif isinstance(selector, Items):
        wanted = list(selector.items)
    else:
        raise r.error("pos=a->b maps source positions: not for steering", stmt.line)
    return tuple(sorted({position(v) for v in wanted}))


def _steered_position(value: int, stmt: Edit, r: Binder, prompt: Prompt, generated: int) -> int:
    """A position of the prompt (negative: from its end), or one of the `generated` tokens."""
    if value < 0:
        return r.position(Index(value), prompt, stmt)
    if value >= len(prompt) + generated:
        past = "the prompt" if not generated else f"the prompt and {generated} new tokens"
        raise r.error(
            f"pos={value} is past {past}: {len(prompt) + generated} tokens",
            stmt.line,
            hint="positions past the prompt exist only when generating",
            token="pos=",
        )
    return value


def _vector(stmt: Edit, r: Binder, site: Site, make_vector: MakeVector) -> tuple[torch.Tensor, str]:
    """The statement's vector on the host, and a short label for it. A vector given by name is
    a (d,) or (k, d) tensor, or an `nv.Vector` (anything with the `values`, `site` and `layer`
    it was made with), added where it was made."""
    made = stmt.by.vector
    line = stmt.line
    if isinstance(made, Contrast):
        texts = [_texts(p, r, line) for p in (made.positive, made.negative)]
        try:
            v = make_vector(
                texts[0],
                texts[1],
                model=r.model,
                tokenizer=r.tokenizer,
                layer=site.layer,
                site=stmt.component,
                method=made.method,
                normalize=made.normalized,
                sites=r.sites,
            )
        except NbveneError as e:
            raise r.error(e, line, token=made.method) from None
        names = [_short(p) for p in (made.positive, made.negative)]
        return v.values, f"{made.method}({names[0]}, {names[1]})"
    value = r.lookup(made, line)
    if not isinstance(value, torch.Tensor) and all(
        hasattr(value, a) for a in ("values", "site", "layer")
    ):
        if value.site != stmt.component or (value.layer is not None and value.layer != site.layer):
            raise r.error(
                f"{{{made.name}}} was made at {value.site} layer {value.layer}, and is added at "
                f"{stmt.component} layer {site.layer}",
                line,
                hint=f"add it where it was made, or pass {made.name}.values to reuse its numbers",
                token="{" + made.name + "}",
            )
        return value.values, made.name
    if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2):
        raise r.error(
            f"{{{made.name}}} must be an nv.Vector or a (d,) tensor, got "
            f"{getattr(value, 'shape', type(value).__name__)}",
            line,
            token="{" + made.name + "}",
        )
    return value.detach().float().cpu(), made.name


def _texts(prompts, r: Binder, line: int) -> list[str]:
    """The prompt texts of `mean_diff(...)`'s arguments."""
    if isinstance(prompts, Batch):
        return [t for item in prompts.items for t in _texts(item, r, line)]
    if isinstance(prompts, Text):
        return [prompts.value]
    value = r.lookup(prompts, line)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise r.error(
        f"{{{prompts.name}}} must be a prompt or a list of prompts, got {type(value).__name__}",
        line,
        token="{" + prompts.name + "}",
    )


def _short(prompts) -> str:
    if isinstance(prompts, Var):
        return prompts.name
    if isinstance(prompts, Text):
        return repr(prompts.value)
    return f"[{len(prompts.items)} prompts]"


def steered_site(sitemap: SiteMap, written: str, layer: int | None) -> Site:
    """The site of a component at a layer, checked (a negative layer counts from the end):
    where a steering vector is made or added, a whole-vector site."""
    component = sitemap.resolve(written)
    if sitemap.layered(component):
        n = sitemap.n_layers
        if layer is None:
            raise NbveneError(f"{written} needs a layer", hint=f"layer=0..{n - 1}")
        if not -n <= layer < n:
            raise NbveneError(
                f"layer {layer} is out of range: the model has {n} layers (0..{n - 1})"
            )
        layer %= n
    if sitemap.heads(component) is not None:
        raise NbveneError(
            f"steering vectors live at whole-vector sites; {written!r} is split by head",
            hint="use block_output, mlp_output, attention_output, ...",
        )
    return sitemap.site(component, layer)
