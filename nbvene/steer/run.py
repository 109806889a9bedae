"""Running steering specs: `generate` (text, baseline and steered rows in one batch, or the
steered rows only) and
`measure` (the metric on the steered forward pass of the prompt, per strength)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nbvene.backends import generated, is_nnsight, steered_values
from nbvene.bind import limits
from nbvene.bind.steering import Steering, resolve_steering
from nbvene.engine.lock import runs_model
from nbvene.engine.memory import Budget
from nbvene.errors import GenerationInterrupted, NbveneError, error_at
from nbvene.results import Axis, Result
from nbvene.spec import Spec, parse
from nbvene.spec.ast import Generate
from nbvene.steer.decode import Decoded, decode, next_logits
from nbvene.steer.extract import vector
from nbvene.steer.generation import Generation


@runs_model
def generate(
    spec: str | Spec,
    *,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: Mapping[str, str] | None = None,
    use_cache: bool = True,
    max_batch: int = 64,
    max_memory: int | str | None = None,
    baseline: bool = True,
) -> Generation:
    """Generate from a steering spec: the baseline and every steered row in one batch.

    >>> gen = nv.generate('''
    ... steer:    block_output layer=12 by mean_diff({kind}, {cruel}) * 4
    ... generate: "I think that you are" max_new_tokens=20
    ... ''', model=model, tokenizer=tok, namespace={"kind": kind, "cruel": cruel})
    >>> gen.baseline, gen.steered[0]

    A spec without `generate:` generates with the defaults (30 new tokens, greedy) from `base:`.
    `baseline=False` decodes the steered rows only (one row less to compute; nothing marked as
    departing from the baseline, and `gen.baseline` is None).
    `use_cache=False` reruns every position at each step (the same tokens, slower).
    At most `max_batch` rows decode together (fewer if `max_memory`, bytes, "2GB" or "auto",
    says so; halved on out-of-memory). Interrupting raises `nv.GenerationInterrupted`, whose
    `.result` is the `Generation` so far.
    """
    lm = model if is_nnsight(model) else None  # through nnsight's .generate()
    if lm is not None:
        model, tokenizer = lm._module, tokenizer or lm.tokenizer
    steering = steer_plan(spec, model=model, tokenizer=tokenizer, namespace=namespace, sites=sites)
    rows = steering.rows() if baseline else steering.rows()[1:]
    if lm is not None:
        return generation(steering, rows, lm=lm, budget=Budget(max_batch), has_baseline=baseline)
    tokens = len(steering.prompt) + steering.generate.max_new_tokens
    budget = Budget.within(max_batch, max_memory, model, tokens, cache=use_cache)
    return generation(steering, rows, use_cache=use_cache, budget=budget, has_baseline=baseline)


def steer_plan(spec: str | Spec, *, model, tokenizer=None, namespace=None, sites=None) -> Steering:
    """The steering spec bound to the model (its vectors made); a spec without `generate:`
    gets the default one."""
    parsed = parse(spec)
    steering = resolve_steering(parsed, model, tokenizer, namespace, sites, make_vector=vector)
    if steering.generate is None:
        steering.generate = Generate()
    window = limits.context(model)
    new_tokens = steering.generate.max_new_tokens
    if window is not None and len(steering.prompt) + new_tokens > window:
        raise error_at(
            parsed,
            f"the prompt has {len(steering.prompt)} tokens, and {new_tokens} new ones would "
            f"take it past the {window} positions the model takes",
            parsed.generate.line if parsed.generate is not None else parsed.lines.get("base", 0),
            hint=f"ask for max_new_tokens={max(1, window - len(steering.prompt))} or fewer, "
            "or shorten the prompt",
            token="max_new_tokens",
        )
    return steering


def generation(
    steering: Steering,
    rows: list[tuple[float, ...]],
    *,
    use_cache: bool = True,
    budget: Budget | None = None,
    lm=None,
    has_baseline: bool = True,
    reference: list[int] | None = None,
) -> Generation:
    """Decode `rows` (strength tuples; the first is the baseline if `has_baseline`, else
    `reference` may give the baseline's ids to mark departures against) in one batch (or the
    budget's chunks; through nnsight's `.generate()` with an nnsight `lm`); on
    KeyboardInterrupt, `GenerationInterrupted` with the text so far."""
    strengths = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(steering.terms))
    if lm is None:
        decoded = decode(steering, strengths, use_cache=use_cache, budget=budget)
    else:
        batch = budget.size if budget is not None else 64
        decoded = Decoded(*generated(steering, strengths, lm, max_batch=batch), interrupted=False)
    tok = steering.tokenizer
    tokens = [[_piece(tok, i) for i in ids] for ids in decoded.ids]
    texts = [_cut(_text(tok, ids), steering.generate.stop) for ids in decoded.ids]
    metric = None
    if steering.metric is not None and decoded.first_logits is not None:
        from nbvene.engine.metrics import metric_values

        metric = metric_values(steering.metric, decoded.first_logits, None).cpu()
    made = Generation(
        prompt=steering.prompt.text or "",
        labels=row_labels(steering, rows, has_baseline),
        strengths=list(rows),
        ids=decoded.ids,
        tokens=tokens,
        texts=texts,
        stopped=decoded.stopped,
        spec=steering.spec,
        metric=metric,
        metric_name=_metric_name(steering),
        logits=decoded.first_logits,
        meta={"model": _model_name(steering.model), "terms": [t.label for t in steering.terms]},
        has_baseline=has_baseline,
        reference=reference,
    )
    if decoded.interrupted:
        raise GenerationInterrupted(made)
    return made


@runs_model
def measure(
    spec: str | Spec,
    *,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: Mapping[str, str] | None = None,
) -> Result:
    """The metric on the steered forward pass of the prompt: a scalar, or one value per
    strength of a sweep (`* 0..8 step 2`: an axis named `strength`). The unsteered run's value
    is `res.corrupted` (the base run without intervention, as for patching)."""
    lm = model if is_nnsight(model) else None  # measured in nnsight traces
    if lm is not None:
        model, tokenizer = lm._module, tokenizer or lm.tokenizer
    parsed = parse(spec)
    steering = resolve_steering(parsed, model, tokenizer, namespace, sites, make_vector=vector)
    if steering.metric is None:
        raise NbveneError(
            "nv.run measures a metric, and this steering spec has none",
            hint="add a metric: line, or call nv.generate(...) for text",
        )
    rows = steering.rows()
    strengths = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(steering.terms))
    from nbvene.engine.metrics import metric_values

    if lm is None:
        values = metric_values(steering.metric, next_logits(steering, strengths), None).cpu()
    else:
        values = steered_values(steering, strengths, lm)
    axes: tuple[Axis, ...] = ()
    steered = values[1:]
    if steering.swept is not None:
        labels = tuple(row[steering.swept] for row in rows[1:])
        axes = (Axis("strength", labels),)
    else:
        steered = steered[0]
    return Result(
        values=steered,
        axes=axes,
        spec=parsed,
        metric=_metric_name(steering),
        clean=None,
        corrupted=values[0],
        meta={
            "model": _model_name(model),
            "tokens": [list(steering.prompt.tokens)],
            "terms": [t.label for t in steering.terms],
            "strengths": rows[1:],
        },
    )


def row_labels(
    steering: Steering, rows: list[tuple[float, ...]], has_baseline: bool = True
) -> list[str]:
    labels = []
    for index, row in enumerate(rows):
        if index == 0 and has_baseline:
            labels.append("baseline")
        elif steering.swept is not None and len(steering.terms) > 1:
            labels.append(f"strength {row[steering.swept]:g}")
        else:
            labels.append("steered " + ", ".join(f"×{s:g}" for s in row))
    return labels


def _metric_name(steering: Steering) -> str | None:
    m = steering.spec.metric
    if m is None:
        return None
    return m.name + (f"({', '.join(repr(a) for a in m.args)})" if m.args else "")


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or type(model).__name__


def _piece(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)


def _text(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids) if tokenizer is not None else " ".join(map(str, ids))


def _cut(text: str, stops: tuple[str, ...]) -> str:
    """The text up to and including the first stop string."""
    ends = [text.index(s) + len(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text
