"""A training spec's `via rotated(k=1)` statements bound to modules: each becomes
`via {rotated#0}` with the module in the namespace, so the same modules serve training,
evaluation and saving."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch

from nbvene.bind.patching import resolve
from nbvene.bind.plan import Plan
from nbvene.errors import NbveneError, error_at
from nbvene.interventions.trainable import Trainable, build
from nbvene.spec import Call, Metric, Spec, Var


def named_calls(spec: Spec) -> tuple[Spec, dict[str, tuple[int, Call]]]:
    """The spec with each `via name(...)` replaced by `via {name#i}` (i: the statement's index),
    and the calls by their new names."""
    calls: dict[str, tuple[int, Call]] = {}
    statements = []
    for i, stmt in enumerate(spec.interventions):
        if isinstance(stmt.via, Call):
            name = f"{stmt.via.name}#{i}"
            calls[name] = (i, stmt.via)
            stmt = replace(stmt, via=Var(name))
        statements.append(stmt)
    return replace(spec, interventions=tuple(statements)), calls


def resolve_calls(
    spec: Spec, namespace: Mapping, seed: int | None = None
) -> tuple[Spec, dict[str, Trainable]]:
    """`named_calls(spec)`, with the modules the calls build (by name). `seed` seeds the modules
    whose call gives none."""
    bound, calls = named_calls(spec)
    modules: dict[str, Trainable] = {}
    for name, (i, call) in calls.items():
        line = spec.interventions[i].line
        args = {}
        for key, value in call.args:
            if isinstance(value, Var):
                if value.name not in namespace:
                    raise error_at(
                        spec,
                        f"{{{value.name}}} is not defined",
                        line,
                        hint=f"pass namespace={{'{value.name}': ...}}",
                        token="{" + value.name + "}",
                    )
                value = namespace[value.name]
            args[key] = value
        if seed is not None and "seed" not in args:
            args["seed"] = seed
        try:
            modules[name] = build(call.name, args)
        except NbveneError as e:
            raise error_at(spec, e, line, token=call.name + "(") from None
    return bound, modules


def via_modules(spec: Spec, namespace: Mapping) -> dict[str, torch.nn.Module]:
    """The modules with trainable parameters that `via {name}` statements name, by name (the
    user's own interventions)."""
    found = {}
    for stmt in spec.interventions:
        module = namespace.get(stmt.via.name) if isinstance(stmt.via, Var) else None
        if isinstance(module, torch.nn.Module) and any(
            p.requires_grad for p in module.parameters()
        ):
            found[stmt.via.name] = module
    return found


def plan_examples(spec: Spec, model, tokenizer, namespace, sites) -> Plan:
    """The plan of a spec that is trained or measured by its label: the engine's checks need a
    metric, which is never computed here, so a spec without one gets a stand-in."""
    if spec.metric is None:
        spec = replace(spec, metric=Metric("logit", (0,)))
    return resolve(spec, model, tokenizer, namespace, sites)


def check_trainable(plan: Plan, what: str = "nv.train") -> None:
    """A plan training can use: one row per example, nothing swept, no noise, nothing collected."""
    spec = plan.spec
    swept = [a.name for a in plan.axes if a.name != "example"]
    if swept:
        stmt = next(s for s in spec.interventions if any(s.selector(a) for a in swept))
        raise error_at(
            spec,
            f"{what} fits one intervention per example, and this spec sweeps {', '.join(swept)}",
            stmt.line,
            hint="choose one value: layer=3 instead of layer=*, pos=-1 instead of pos=*",
        )
    if plan.corrupt is not None:
        line = spec.corrupt.line
        raise error_at(
            spec,
            f"{what} takes a source: line, not corrupt:",
            line,
            hint="give the clean prompts as source: and the corrupted ones as base:",
        )
    for op in plan.ops:
        if getattr(op.module, "per_example", False):  # Forward renumbers the examples of a batch
            raise error_at(
                spec,
                f"{what} takes no per-example dims (one list of units per base prompt)",
                op.line,
                hint="give one list for all examples, dims=[0, 3], or measure with nv.run",
            )
        if isinstance(op.module, Trainable) and op.module.needs_source and plan.source is None:
            raise error_at(
                spec,
                f"{op.module.kind}(...) needs a source",
                op.line,
                hint="add a source: line",
            )
    if plan.collect is not None:
        stmt = spec.interventions[plan.collect]
        raise error_at(
            spec,
            f"{what} takes no collect:",
            stmt.line,
            hint="collect activations with nv.run",
        )
