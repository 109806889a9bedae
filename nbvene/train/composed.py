"""`nv.Intervened(model, spec)`: the model with a spec's interventions, as one `nn.Module` whose
`forward(base, sources)` returns the intervened output, gradients flowing to what is trainable;
for training loops of your own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import nn

from nbvene.bind.training import check_trainable, plan_examples, resolve_calls, via_modules
from nbvene.engine.executor import device_of, home
from nbvene.engine.lock import holding
from nbvene.errors import NbveneError, error_at
from nbvene.spec import Spec, Var, parse
from nbvene.train.forward import Forward
from nbvene.train.trained import site_of, site_width


class Intervened(nn.Module):
    """The model with a spec's interventions applied.

    >>> das = nv.Intervened(model, "patch: hidden.output via rotated(k=1)")
    >>> outputs = das(base, source)         # (batch, classes) at each base's read position
    >>> optimizer = torch.optim.Adam(das.interventions.parameters(), lr=1e-2)

    `base` and `sources` are what the spec's `{base}` and `{source}` would hold (text, token ids
    or float inputs); a spec without `base:`/`source:` lines reads them from these arguments.
    The output is read where `nv.run` reads its metric: the last position, or the whole output
    when it has no sequence axis. `interventions` holds the trainable modules (built at once
    when the site's width can be read from the model, else at the first call); `model` is the
    wrapped model, frozen or not as you left it.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: str | Spec,
        *,
        tokenizer=None,
        namespace: Mapping | None = None,
        sites: Mapping[str, str] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        parsed = parse(spec)
        if parsed.base is None:
            parsed = replace(parsed, base=Var("base"), lines={"base": 0, **parsed.lines})
        if parsed.source is None and parsed.corrupt is None:
            parsed = replace(parsed, source=Var("source"), lines={"source": 0, **parsed.lines})
        for which in ("base", "source"):
            if not isinstance(getattr(parsed, which), Var):
                raise error_at(
                    parsed,
                    f"Intervened takes its {which} as an argument: write '{which}: {{{which}}}' "
                    "or leave the line out",
                    parsed.lines[which],
                )
        self.namespace = dict(namespace or {})
        self.bound, built = resolve_calls(parsed, self.namespace, seed)
        self.model = model
        self.interventions = nn.ModuleList(
            [*built.values(), *via_modules(self.bound, self.namespace).values()]
        )
        self.built = built
        self.spec, self.tokenizer, self.sites = parsed, tokenizer, sites
        self._make(built)

    def _make(self, built: dict) -> None:
        """Build the parameters now where the site's width can be read from the model, on the
        device its site's module computes on (a model split over devices)."""
        for name, module in built.items():
            stmt = next(s for s in self.bound.interventions if s.via == Var(name))
            try:
                site = site_of(self.model, self.sites, stmt)
            except NbveneError:
                site = None  # the first call reports it, naming the spec line
            width = site_width(self.model, site) if site is not None else None
            if width is not None and stmt.selector("head") is None:
                at = home(self.model.get_submodule(site.module)) or device_of(self.model)
                module.build(width, at)

    def forward(self, base, sources=None, **namespace) -> torch.Tensor:
        """The intervened output at each base example's read position: (batch, classes)."""
        values = {**self.namespace, **namespace, **self.built, self.spec.base.name: base}
        if sources is not None:
            values[self.spec.source.name] = sources
        spec = self.bound
        if sources is None and isinstance(self.spec.source, Var):
            spec = replace(spec, source=None)
        plan = plan_examples(spec, self.model, self.tokenizer, values, self.sites)
        check_trainable(plan, "Intervened")
        grad_source = torch.is_grad_enabled() and any(
            p.requires_grad for p in self.model.parameters()
        )
        with holding(self.model, "Intervened"):
            return Forward(plan, grad_source=grad_source)(range(len(plan.base)))
