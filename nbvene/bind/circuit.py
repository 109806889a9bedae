"""A `discover:` spec bound to one model: `resolve_discovery(spec, model, ...)` → `Discovery`,
the clean (base) and corrupted (source) prompts paired token for token, the metric as a function
of the logits at the read position, and the method's options with their defaults. Every
problem is raised on its spec line before anything runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from nbvene.bind.binder import Binder
from nbvene.bind.prompts import Prompt
from nbvene.sites import SiteMap
from nbvene.spec import STATEMENTS, Spec, Var
from nbvene.spec.ast import Ablation, CircuitMethod
from nbvene.spec.metrics import lookup

TOP = 100
"""The edges `by eap` and `by eap-ig` keep when neither top= nor threshold= is written."""
STEPS = 5
"""EAP-IG's interpolation steps when steps= is not written."""
TAU = 0.02
"""How far `by acdc` lets the metric move (see `nbvene.circuits.acdc`) when tau= is not
written."""

_EXAMPLE = (
    'base:    ["When Mary and John went to the store, John gave a drink to"]\n'
    'source:  ["When Mary and John went to the store, Mary gave a drink to"]\n'
    "discover: circuit by eap top=200\n"
    'metric:  logit_diff(" Mary", " John")'
)


@dataclass(frozen=True)
class Discovery:
    """What `nv.discover` runs: the method and its options, the paired prompts, the metric."""

    spec: Spec
    model: nn.Module
    method: CircuitMethod
    clean: tuple[Prompt, ...]
    """The base prompts: the behaviour the circuit is for."""
    corrupted: tuple[Prompt, ...]
    """The source prompts, one per clean prompt, of the same token length."""
    metric: Callable[[torch.Tensor], torch.Tensor]
    """(rows, vocab) logits at the read position → (rows,) metric values."""
    metric_text: str
    """The metric as the spec writes it: `logit_diff(" Mary", " John")`."""
    top: int | None
    """Keep the `top` best-scored edges (EAP, EAP-IG); None with a threshold, or for ACDC."""
    threshold: float | None
    """Keep the edges whose |score| is over it (EAP, EAP-IG)."""
    tau: float
    steps: int
    ablation: Ablation
    given: tuple[str, ...] = ()
    """The edges of `circuit of [...]`, by name (method `given`): nbvene.circuits checks
    them against the model's graph."""


def resolve_discovery(
    spec: Spec,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: SiteMap | Mapping[str, str] | None = None,
) -> Discovery:
    """Bind a `discover:` spec to a model, checking its statements, prompts and metric."""
    return _Binding(spec, model, tokenizer, namespace, sites).discovery()


def _top(d) -> int | None:
    """top=, or TOP where EAP is given neither top= nor threshold=."""
    if d.top is not None or d.threshold is not None or d.method in ("acdc", "given"):
        return d.top
    return TOP


class _Binding(Binder):
    """The binder of a discover: spec."""

    def discovery(self) -> Discovery:
        spec, d = self.spec, self.spec.discover
        self._only_discovery_statements()
        if spec.base is None or spec.source is None:
            missing = "base:" if spec.base is None else "source:"
            raise self.error(
                f"discover: needs {missing} prompts: base: the clean run, source: the "
                "corrupted one, paired token for token",
                d.line,
                hint="write e.g.\n" + _EXAMPLE,
            )
        if spec.metric is None:
            raise self.error(
                "discover: needs a metric: the circuit is the part of the model that carries it",
                d.line,
                hint='add e.g. metric: logit_diff(" Mary", " John")',
            )
        clean = self.prompts(spec.base, spec.lines.get("base", d.line))
        corrupted = self.prompts(spec.source, spec.lines.get("source", d.line))
        corrupted = self._paired(clean, corrupted)
        return Discovery(
            spec=spec,
            model=self.model,
            method=d.method,
            clean=tuple(clean),
            corrupted=tuple(corrupted),
            metric=self._metric(len(clean)),
            metric_text=STATEMENTS["metric"].write(spec.metric),
            top=_top(d),
            threshold=d.threshold,
            tau=TAU if d.tau is None else d.tau,
            steps=STEPS if d.steps is None else d.steps,
            ablation=d.ablation,
            given=d.edges,
        )

    def _only_discovery_statements(self) -> None:
        """A discover: spec reads base:, source: and metric:; an edit, a corruption or a
        generation belongs to another kind of run."""
        for keyword, line in sorted(self.spec.lines.items(), key=lambda kv: kv[1]):
            if "discovery" not in STATEMENTS[keyword].allowed:
                raise self.error(
                    f"{keyword}: has no place in a discover: spec",
                    line,
                    hint="a discover: spec reads base: (clean), source: (corrupted) and metric:; "
                    f"run the {keyword}: line in a spec of its own",
                )
        defaults = {f.name: f.default for f in dataclasses.fields(self.spec)}
        for keyword, statement in STATEMENTS.items():  # a Spec built by hand has no lines
            value = getattr(self.spec, statement.field)
            if "discovery" not in statement.allowed and value != defaults[statement.field]:
                first = value[0] if isinstance(value, tuple) else value
                raise self.error(
                    f"{getattr(first, 'verb', keyword)}: has no place in a discover: spec",
                    getattr(first, "line", 0),
                    hint="a discover: spec reads base: (clean), source: (corrupted) and metric:",
                )
        if self.spec.sources:
            source = self.spec.sources[0]
            raise self.error(
                f"the named source {source.name!r} has no place in a discover: spec",
                source.line,
                hint="give the corrupted prompts on the source: line",
            )

    def _paired(self, clean: list[Prompt], corrupted: list[Prompt]) -> list[Prompt]:
        """One corrupted prompt per clean one (a single source serves them all), each of
        its clean prompt's token length: edges are patched position by position."""
        line = self.spec.lines.get("source", self.spec.discover.line)
        if any(p.values is not None for p in (*clean, *corrupted)):
            raise self.error(
                "discover: reads token prompts; these are float inputs",
                line,
                hint="give text, or token ids as an integer tensor",
            )
        if len(corrupted) == 1:
            corrupted = corrupted * len(clean)
        if len(corrupted) != len(clean):
            raise self.error(
                f"{len(clean)} base prompts and {len(corrupted)} source prompts",
                line,
                hint="give one source prompt per base prompt (or one for all)",
            )
        for i, (c, s) in enumerate(zip(clean, corrupted, strict=True)):
            if len(c) != len(s):
                which = f"base prompt {i}" if len(clean) > 1 else "the base prompt"
                raise self.error(
                    f"{which} has {len(c)} tokens and its source {len(s)}: "
                    f"{list(c.tokens)} vs {list(s.tokens)}",
                    line,
                    hint="discovery patches position by position: pair prompts of the same "
                    "token length (swap a name for another single-token name)",
                )
        return corrupted

    def _metric(self, rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The spec's metric as a function of the read position's logits; a `{name}` token
        may hold one token per base prompt (IOI: each prompt its own names)."""
        m = self.spec.metric
        found = lookup(m.name)
        if found is None:  # a Spec built by hand: the parser knows the registered names
            raise self.error(f"unknown metric {m.name!r}", m.line)
        if found.needs_clean:
            raise self.error(
                f"{m.name} compares two runs; discover: needs a metric of one run's logits",
                m.line,
                hint='write e.g. metric: logit_diff(" Mary", " John") or metric: p(" Mary")',
                token=m.name,
            )
        if m.normalized:
            raise self.error(
                "discover: normalizes by itself (faithfulness: 1 is the full model, 0 the "
                "corrupted run); drop 'normalized'",
                m.line,
                token="normalized",
            )
        ids = torch.tensor([self._token_ids(arg, rows) for arg in m.args], dtype=torch.long)
        compute = found.compute
        if all(bool((row == row[0]).all()) for row in ids):
            same = tuple(int(row[0]) for row in ids)

            def metric(logits: torch.Tensor) -> torch.Tensor:
                return compute(logits.float(), same, None)

            return metric

        def per_prompt(logits: torch.Tensor) -> torch.Tensor:
            # (rows, vocab): row i reads its own prompt's tokens; a batch may repeat the
            # prompts (ACDC and the curve stack candidates), so rows go by i % prompts
            values = [
                compute(logits[i : i + 1].float(), tuple(ids[:, i % rows].tolist()), None)
                for i in range(logits.shape[0])
            ]
            return torch.cat(values)

        return per_prompt

    def _token_ids(self, arg, rows: int) -> list[int]:
        """A metric argument's token id for each of the `rows` base prompts."""
        line = self.spec.metric.line
        value = self.lookup(arg, line) if isinstance(arg, Var) else arg
        if not isinstance(value, list | tuple):
            return [self.token_id(arg, line)] * rows
        if len(value) != rows:
            raise self.error(
                f"{{{arg.name}}} holds {len(value)} tokens for {rows} base prompts",
                line,
                hint="give one token for all, or one per base prompt",
                token="{" + arg.name + "}",
            )
        return [self.token_id(v, line) for v in value]
