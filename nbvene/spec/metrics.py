"""The metrics a spec can name (`metric: p(" Paris")`): one `MetricDef` each, read by the parser
(names, arity), the binder (does it need the clean run?), the engine (how to compute it) and the
palette (where its colour scale centres). Adding a metric is one `register` call.

The compute functions use tensor methods only, so this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Tensor = Any
"""A torch.Tensor (not imported here: the spec package imports no torch)."""


@dataclass(frozen=True)
class MetricDef:
    """One metric: what a spec writes, and how a run turns next-token logits into its value.

    `compute(logits, ids, reference)` takes (rows, vocab) float32 logits, the token ids the
    spec named (`arity` of them) and the clean run's (rows, vocab) float32 logits when
    `needs_clean` (else None), and returns (rows,) values.
    """

    name: str
    arity: int
    """How many tokens it takes: `kl` none, `p(" Paris")` one, `logit_diff(a, b)` two."""
    compute: Callable[[Tensor, tuple[int, ...], Tensor | None], Tensor]
    needs_clean: bool = False
    """Whether it compares with the clean run (a `source:` or `corrupt:` line is needed)."""
    centre: float | None = None
    """The value its colour scale centres on; None: the base (or corrupted) run's value."""
    centre_meaning: str = ""
    """What the fixed `centre` means, for the legend."""
    aliases: tuple[str, ...] = ()
    """Other names a spec may write (`prob` for `p`)."""

    def example(self, written: str | None = None) -> str:
        """How a spec writes it (under the name `written`), for error hints: `p(" Paris")`."""
        tokens = ('" Paris"', '" Rome"', '" Berlin"')[: self.arity]
        return (written or self.name) + (f"({', '.join(tokens)})" if tokens else "")


_REGISTRY: dict[str, MetricDef] = {}


def register(metric: MetricDef) -> MetricDef:
    """Add a metric (under its name and its aliases); a name already taken is an error."""
    taken = [n for n in (metric.name, *metric.aliases) if n in _REGISTRY]
    if taken:
        raise ValueError(f"metric name {taken[0]!r} is taken")
    for name in (metric.name, *metric.aliases):
        _REGISTRY[name] = metric
    return metric


def unregister(name: str) -> None:
    """Remove a metric registered under `name` (and its aliases)."""
    metric = _REGISTRY[name]
    for alias in (metric.name, *metric.aliases):
        del _REGISTRY[alias]


def lookup(name: str) -> MetricDef | None:
    """The metric a spec names (by its name or an alias), or None."""
    return _REGISTRY.get(name)


def names() -> tuple[str, ...]:
    """Every name a spec may write, aliases beside their metric, in registration order."""
    return tuple(_REGISTRY)


def _kl(logits: Tensor, ids: tuple[int, ...], reference: Tensor | None) -> Tensor:
    """KL(clean ‖ run) of the next-token distributions."""
    clean = reference.log_softmax(-1)
    run = logits.log_softmax(-1)
    return (clean.exp() * (clean - run)).sum(-1)


register(MetricDef("p", 1, lambda x, ids, _: x.softmax(-1)[:, ids[0]], aliases=("prob",)))
register(MetricDef("logprob", 1, lambda x, ids, _: x.log_softmax(-1)[:, ids[0]]))
register(MetricDef("logit", 1, lambda x, ids, _: x[:, ids[0]]))
register(
    MetricDef(
        "logit_diff",
        2,
        lambda x, ids, _: x[:, ids[0]] - x[:, ids[1]],
        centre=0.0,
        centre_meaning="0 = both answers equally likely",
    )
)
register(MetricDef("kl", 0, _kl, needs_clean=True))
