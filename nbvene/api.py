"""The public entry points: `nv.run(spec, model=..., tokenizer=...)`, and `nv.discover` for a
`discover:` spec (which `nv.run` also takes)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import torch
from torch import nn

from nbvene.backends import is_nnsight, run_plan, unsupported
from nbvene.bind import Plan, resolve
from nbvene.bind.circuit import resolve_discovery
from nbvene.bind.limits import MAX_CELLS
from nbvene.circuits import Circuit
from nbvene.engine import memory
from nbvene.engine.executor import device_of
from nbvene.engine.lock import runs_model
from nbvene.engine.rerun import Rerun
from nbvene.engine.run import Outcome, Progress, Stopped, execute
from nbvene.errors import NbveneError, SweepInterrupted, error_at
from nbvene.results import Axis, Result, add_live_view
from nbvene.sites import SiteMap
from nbvene.spec import Spec, Var, is_steering, parse
from nbvene.version import __version__


def plan(
    spec: str | Spec,
    *,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: Mapping[str, str] | SiteMap | None = None,
    max_cells: int = MAX_CELLS,
) -> Plan:
    """Parse and check a spec against a model without running anything (a dry run).

    A plan of more than `max_cells` patched runs (examples × grid cells × noise samples) is
    refused before anything is laid out; `print(plan.describe())` shows the grid, the forward
    passes, and the memory and arithmetic they take. An nnsight model is planned against the
    torch model inside it."""
    model, tokenizer = _torch_model(model, tokenizer)
    if not isinstance(max_cells, int) or max_cells < 1:
        raise NbveneError(
            f"max_cells must be at least 1, got {max_cells!r}",
            hint=f"a whole number of patched runs; the default is {MAX_CELLS:,}",
        )
    parsed = parse(spec)
    if parsed.discover is not None:
        raise error_at(
            parsed,
            "nv.plan lays out patching specs; a discover: spec runs with nv.discover",
            parsed.discover.line,
            hint="call nv.discover(spec, model=..., tokenizer=...) (nv.run takes it too)",
        )
    return resolve(parsed, model, tokenizer, namespace, sites, max_cells, memory=memory)


@runs_model
def discover(
    spec: str | Spec,
    *,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: Mapping[str, str] | SiteMap | None = None,
    progress: Progress | None = None,
) -> Circuit:
    """Find the circuit a `discover:` spec asks for and return it as a `Circuit`.

    >>> circ = nv.discover('''
    ... base:     {clean}
    ... source:   {corrupted}
    ... discover: circuit by eap top=200
    ... metric:   logit_diff({correct}, {wrong})
    ... ''', model=model, tokenizer=tok, namespace=globals())
    >>> circ.faithfulness, len(circ.kept)

    Every edge between the model's components is scored (EAP, EAP-IG) or pruned (ACDC), the
    kept circuit checked by ablation (`Circuit.faithfulness`), and the faithfulness measured
    for a range of circuit sizes (`Circuit.curve`). `circ.spec` re-runs the ablation check of
    the kept edges. `progress(done, total)` is called as the forward passes finish; without
    it, a line of progress (emptied at the end). See docs/circuits.md.
    """
    from nbvene.circuits.discover import discover as run_discovery

    model, tokenizer = _torch_model(model, tokenizer)
    _check_progress(progress)
    parsed = parse(spec)
    if parsed.discover is None:
        raise NbveneError(
            "nv.discover runs a spec with a discover: line",
            hint="add e.g. discover: circuit by eap top=200 (other specs run with nv.run)",
        )
    bound = resolve_discovery(parsed, model, tokenizer, namespace, sites)
    bar = progress_line(unit="passes") if progress is None else None
    try:
        return run_discovery(bound, progress=progress or bar)
    finally:
        if bar is not None:
            bar.close()


@runs_model
def run(
    spec: str | Spec,
    *,
    model: nn.Module,
    tokenizer=None,
    namespace: Mapping | None = None,
    sites: Mapping[str, str] | SiteMap | None = None,
    max_batch: int = 64,
    max_memory: int | str | None = None,
    progress: Progress | None = None,
    start_at_layer: bool = True,
    live: bool = False,
    max_cells: int = MAX_CELLS,
    remote: bool | str = False,
    stop: Callable[[], bool] | None = None,
) -> Result | Circuit:
    """Run a spec on a model and return a labelled `Result`.

    >>> res = nv.run('''
    ... base:   "The Colosseum is located in the city of"
    ... source: "The Eiffel Tower is located in the city of"
    ... patch:  block_output layer=* pos=-1
    ... metric: logit_diff(" Paris", " Rome")
    ... ''', model=model, tokenizer=tok)
    >>> res.values.shape, res.axes
    (torch.Size([30]), ('layer',))

    `namespace` supplies `{name}` values (prompts, lists of prompts, vectors, callables);
    `sites` maps component names to module paths for models nbvene has no adapter for.

    A sweep runs `max_batch` grid cells per forward pass (fewer if `max_memory`, bytes, "2GB"
    or "auto", says so; halved on out-of-memory), and so do its source, baseline and `mean:`
    runs. `progress(done, total)` is called after each forward pass of the grid, counting
    cells (a cell's noise samples are not counted apart; a callback taking a third argument
    also gets the partial `Result`, cells not run yet NaN); without it, long sweeps show a
    progress line (text, emptied when the sweep ends). With `live=True` (in a notebook) a
    heatmap is shown before the sweep starts, fills in as it runs (its first cell after one
    forward pass of that cell alone, then after each chunk, with a Stop button) and then
    becomes the Result's display; a run with no metric or no swept axis runs as
    usual. With `start_at_layer`, a cell patched at layer l reuses the unpatched run below l
    (Llama-family, GPT-2, GPT-NeoX). Interrupting (Ctrl-C, Stop, or `stop()` returning True:
    it is asked before every block of every forward pass) raises `nv.SweepInterrupted`, whose
    `.result` holds the finished cells (all NaN if it came before the grid); a sweep given
    `stop` runs its first cell alone first, as a live one does. A sweep whose metric reads the
    output keeps each cell's top 5 next tokens (and their probabilities) in `Result.top`.
    A sweep of more than `max_cells` patched runs (default 1,000,000) is refused before it
    starts, with the number it would take.

    With `model=nnsight.LanguageModel(...)` the spec runs through nnsight's tracing (see
    `nbvene.backends.nnsight` for what it supports), on NDIF's hosted model with `remote=True`
    (`remote="local"`: nnsight's rehearsal of it here, each request serialised and run).

    A `discover:` spec returns a `Circuit` (see `nv.discover`).

    A steering spec (`steer:`, `by mean_diff(...)`, a slider or a strength sweep) gives the
    metric on the steered forward pass of `base:` (see docs/steering.md; `nv.generate` makes
    text).
    """
    lm = model if is_nnsight(model) else None
    if remote and lm is None:
        raise NbveneError(
            "remote=True runs the spec on NDIF through nnsight, and the model is not an "
            "nnsight one",
            hint="pass model=nnsight.LanguageModel(repo_id), or drop remote=True",
        )
    if lm is not None:
        model, tokenizer = lm._module, tokenizer or lm.tokenizer
    parsed = parse(spec)
    if parsed.discover is not None:  # a Circuit, not a Result
        if remote:
            raise unsupported("discover: specs with remote=True")
        kwargs = {"namespace": namespace, "sites": sites, "progress": progress}
        return discover(parsed, model=model, tokenizer=tokenizer, **kwargs)
    if is_steering(parsed):
        from nbvene.steer import measure

        if lm is not None and remote:
            raise unsupported("steering specs with remote=True")
        steered = model if lm is None else lm
        return measure(parsed, model=steered, tokenizer=tokenizer, namespace=namespace, sites=sites)
    p = plan(
        parsed,
        model=model,
        tokenizer=tokenizer,
        namespace=namespace,
        sites=sites,
        max_cells=max_cells,
    )
    if not isinstance(max_batch, int) or max_batch < 1:
        raise NbveneError(
            f"max_batch must be at least 1, got {max_batch!r}",
            hint="a whole number of grid cells per forward pass",
        )
    _check_progress(progress)
    if stop is not None and not callable(stop):
        raise NbveneError(f"stop must be a function stop() -> bool, got {type(stop).__name__}")
    if lm is not None:
        values, clean, corrupted = run_plan(p, lm, max_batch=max_batch, remote=remote)
        return _result(p, Outcome(values, clean, corrupted), tokenizer)
    if p.estimate == "attribution":  # one forward and backward pass: no progress
        from nbvene.engine.attribution import estimate

        if max_memory is not None:
            max_batch = min(max_batch, memory.rows_within(p, max_memory, grad=True))
        try:
            return _result(p, estimate(p, max_batch=max_batch))
        except KeyboardInterrupt:
            raise SweepInterrupted(_result(p, _empty(p), tokenizer)) from None
    if max_memory is not None:
        max_batch = min(max_batch, memory.rows_within(p, max_memory))
    if live and _drawable(p):
        return _live(
            p,
            tokenizer,
            max_batch=max_batch,
            start_at_layer=start_at_layer,
            max_memory=max_memory,
            stop=stop,
        )
    bar = None
    if progress is None and len(p.rows) > 4 * max_batch:
        bar = progress = progress_line(_samples(p))
    try:
        outcome = execute(
            p,
            max_batch=max_batch,
            progress=_partial(p, progress),
            start_at_layer=start_at_layer,
            max_memory=max_memory,
            stop=stop,
            preview=stop is not None,
        )
    except Stopped as stopped:
        raise SweepInterrupted(_result(p, stopped.outcome, tokenizer)) from None
    finally:
        if bar is not None:
            bar.close()
    return _result(p, outcome, tokenizer)


def _torch_model(model, tokenizer):
    """The torch model to plan against (an nnsight model's own module, and its tokenizer
    where none is given); NbveneError for anything else than a torch module."""
    if is_nnsight(model):
        model, tokenizer = model._module, tokenizer or model.tokenizer
    if not isinstance(model, nn.Module):
        raise NbveneError(
            f"model must be a torch.nn.Module, got {type(model).__name__}",
            hint="load one with nv.models.load() or transformers' from_pretrained",
        )
    return model, tokenizer


def _check_progress(progress) -> None:
    if progress is not None and not callable(progress):
        raise NbveneError(
            f"progress must be a function progress(done, total), got {type(progress).__name__}"
        )


def _partial(p: Plan, progress: Progress | None) -> Progress | None:
    """The engine counts rows (a cell's noise samples are rows of their own); the user's
    callback counts cells, and one taking (done, total, partial) gets a partial Result."""
    if progress is None:
        return None
    samples = _samples(p)
    try:
        inspect.signature(progress).bind(0, 0, None)
    except (TypeError, ValueError):
        return lambda done, total: progress(done // samples, total // samples)
    return lambda done, total, outcome: progress(
        done // samples, total // samples, _result(p, outcome)
    )


def _samples(p: Plan) -> int:
    return p.corrupt.samples if p.corrupt is not None else 1


def _drawable(p: Plan) -> bool:
    """Whether a live heatmap can draw this run: a metric over one to three swept axes."""
    return p.metric is not None and p.collect is None and 1 <= len(p.axes) <= 3


def _live(
    p: Plan, tokenizer, *, max_batch: int, start_at_layer: bool, max_memory=None, stop=None
) -> Result:
    """The sweep with its heatmap shown first and filled from the progress callback; Stop (or
    `stop()`) is asked between blocks."""
    from nbvene.widgets.live import live_sweep

    with live_sweep(unmeasured(p, tokenizer)) as sweep:
        try:
            outcome = execute(
                p,
                max_batch=max_batch,
                progress=_partial(p, sweep),
                start_at_layer=start_at_layer,
                max_memory=max_memory,
                stop=sweep.asks(stop),
                preview=True,
            )
        except Stopped as stopped:
            partial = _result(p, stopped.outcome, tokenizer)
            sweep.finish(partial, stopped=True)
            raise SweepInterrupted(partial) from None
    result = _result(p, outcome, tokenizer)
    sweep.finish(result, stopped=False)
    return result


def unmeasured(p: Plan, tokenizer=None) -> Result:
    """The Result of `p` before any cell is measured (every value NaN): what a live figure
    draws first."""
    return _result(p, _empty(p), tokenizer)


def _empty(p: Plan) -> Outcome:
    """No cell measured yet."""
    return Outcome(torch.full((len(p.rows),), float("nan")), None, None, done=False)


def progress_line(samples: int = 1, unit: str = "cells"):
    """`progress(done, total)` over cells (not rows: a cell's noise samples are said apart), or
    another `unit`, for a run with no callback of its own, with a `close()`: in a notebook one
    line of text emptied at the end (no widget left behind in a saved notebook), elsewhere a
    tqdm bar on stderr, made at the first progress (which brings the total; a later total may
    differ, as ACDC's passes become known)."""
    from nbvene.widgets.kernel import in_kernel

    note = f"{samples} noise samples each" if samples > 1 else None
    if in_kernel():
        from nbvene.widgets.live import TextProgress

        return TextProgress(unit, note)
    from tqdm import tqdm

    bars = []

    def update(done: int, total: int) -> None:
        if not bars:
            shown = {"unit": f" {unit}", "desc": "nbvene", "leave": False, "postfix": note}
            bars.append(tqdm(total=total, **shown))
        bars[0].total = total
        bars[0].update(done - bars[0].n)

    def close() -> None:
        for bar in bars:
            bar.close()

    update.close = close
    return update


def _result(p: Plan, outcome, tokenizer=None) -> Result:
    samples = _samples(p)
    examples = len(p.base)
    cells = [len(a.labels) for a in p.axes if a.name != "example"]
    unit = tuple(outcome.values.shape[1:])
    values = outcome.values.reshape(examples, *cells, samples, *unit).mean(dim=1 + len(cells))
    if not p.batched:
        values = values[0]
    clean, corrupted = outcome.clean, outcome.corrupted
    if not p.batched:
        clean = None if clean is None else clean[0]
        corrupted = None if corrupted is None else corrupted[0]
    axes = tuple(Axis(a.name, a.labels, a.positions) for a in p.axes)
    top = None
    if outcome.top is not None:  # per cell, in plan order: laid out as the values
        top = {k: v.reshape(examples, *cells, v.shape[-1]) for k, v in outcome.top.items()}
        if not p.batched:
            top = {k: v[0] for k, v in top.items()}
    metric = p.spec.metric
    return Result(
        values=values,
        axes=axes,
        spec=p.spec,
        metric=None if metric is None else _metric_text(metric),
        clean=clean,
        corrupted=corrupted,
        meta=_meta(p),
        rerun=Rerun([p], tokenizer),
        top=top,
        baseline_top=outcome.baseline_top,
    )


def _metric_text(metric) -> str:
    written = ["{" + a.name + "}" if isinstance(a, Var) else repr(a) for a in metric.args]
    args = f"({', '.join(written)})" if metric.args else ""
    return metric.name + args + (" normalized" if metric.normalized else "")


def _meta(p: Plan) -> dict:
    import transformers

    model = p.model
    config = getattr(model, "config", None)
    param = next(model.parameters(), None)
    return {
        "model": getattr(config, "_name_or_path", None) or type(model).__name__,
        "family": p.sites.family_name,
        "dtype": str(param.dtype) if param is not None else None,
        "device": str(device_of(model)),
        "seed": p.corrupt.seed if p.corrupt is not None else None,
        "tokens": [list(prompt.tokens) for prompt in p.base],  # per example: labels are the first's
        "nbvene": __version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def _widget_view(result: Result) -> tuple[dict, dict]:
    """The live widget's part of a Result's display, when a kernel can show one (see
    `nbvene.widgets.mimebundle`); nothing without anywidget or outside a kernel, so showing a
    Result never fails for want of widgets."""
    try:
        from nbvene import widgets
    except ImportError:  # anywidget is not installed
        return {}, {}
    return widgets.mimebundle(result)


add_live_view(_widget_view)
