"""ROME's causal trace in one call: the block, MLP and attention panels side by side, drawn as
they run (`live=True`) or with one line of progress for the three."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from nbvene.api import plan, progress_line, run, unmeasured
from nbvene.engine.lock import runs_model
from nbvene.engine.rerun import Rerun
from nbvene.errors import SweepInterrupted
from nbvene.results import Axis, Result

PANELS = {"block": "block_output", "mlp": "mlp_output", "attention": "attention_output"}


@runs_model
def causal_trace(
    prompt: str,
    subject: str,
    target: str,
    *,
    model: nn.Module,
    tokenizer,
    noise: float = 3.0,
    samples: int = 10,
    window: int = 10,
    seed: int = 0,
    normalized: bool = False,
    max_batch: int = 64,
    live: bool = False,
    stop: Callable[[], bool] | None = None,
) -> Result:
    """Corrupt the subject with noise (`noise` × the embedding std), then restore one state at a
    time: single block outputs, and windows of `window` MLP / attention outputs around each
    layer, as in Meng et al. (2022). Returns values of shape (3, layers, positions) over the
    axes ("panel", "layer", "pos"), the panels being block, mlp and attention.

    With `live=True` (in a notebook) the three panels are shown before the first forward pass
    and fill in as they run, with a Stop button; without, a line of progress counts the three
    panels' cells (emptied at the end). Stop, `stop()` returning True or an interrupt raises
    `nv.SweepInterrupted` with the panels' finished cells.

    >>> res = nv.causal_trace("The Eiffel Tower is located in the city of",
    ...                       subject="The Eiffel Tower", target=" Paris", model=m, tokenizer=t)
    """
    specs = {}
    for panel, component in PANELS.items():
        windowed = f" window={window}" if panel != "block" and window > 1 else ""
        specs[panel] = (
            f"base:    {json.dumps(prompt)}\n"
            f"corrupt: noise {noise:g}σ on {json.dumps(subject)} samples={samples} seed={seed}\n"
            f"restore: {component} layer=* pos=*{windowed}\n"
            f"metric:  p({json.dumps(target)}){' normalized' if normalized else ''}"
        )
    panels = Panels(specs)
    if live:
        from nbvene.widgets.live import live_sweep

        # drawn before the first pass: the grid's layout, from a plan (the run makes its own)
        panels.empty = unmeasured(plan(specs["block"], model=model, tokenizer=tokenizer), tokenizer)
        with live_sweep(panels.result()) as sweep:
            try:
                traced = panels.run(model, tokenizer, max_batch, sweep, sweep.asks(stop))
            except SweepInterrupted as stopped:
                sweep.finish(stopped.result, stopped=True)
                raise
        sweep.finish(traced, stopped=False)
        return traced
    line = progress_line(samples)
    try:
        return panels.run(model, tokenizer, max_batch, _counts(line), stop)
    finally:
        line.close()


class Panels:
    """The three panels' runs, one after the other, seen as one sweep: progress counts the
    cells of all three, and a partial result stacks the finished panels, the running one's
    partial values and NaN for the rest."""

    def __init__(self, specs: dict[str, str]):
        self.specs = specs
        self.empty: Result | None = None  # a panel not run yet; else made from the first partial
        self.done: list[Result] = []

    def run(self, model, tokenizer, max_batch, progress, stop) -> Result:
        """Run the panels; `progress(done, total, partial)` over all three panels' cells."""

        def each(done: int, cells: int, partial: Result) -> None:
            if self.empty is None:
                self.empty = _unrun(partial)
            total = len(self.specs) * cells
            progress(len(self.done) * cells + done, total, self.result(partial))

        for text in self.specs.values():
            try:
                self.done.append(
                    run(
                        text,
                        model=model,
                        tokenizer=tokenizer,
                        max_batch=max_batch,
                        progress=each,
                        stop=stop,
                    )
                )
            except SweepInterrupted as stopped:
                if self.empty is None:  # stopped before the first cell
                    self.empty = _unrun(stopped.result)
                raise SweepInterrupted(self.result(stopped.result)) from None
        return self.result()

    def result(self, running: Result | None = None) -> Result:
        """The panels stacked: finished ones, then `running` (partial), then empty ones."""
        parts = [*self.done, *([running] if running is not None else [])]
        parts += [self.empty] * (len(self.specs) - len(parts))
        first = parts[0]
        tops = [p.top for p in parts]
        return Result(
            values=torch.stack([r.values for r in parts]),
            axes=(Axis("panel", tuple(PANELS)), *first.axes),
            spec=first.spec,
            metric=first.metric,
            clean=first.clean,
            corrupted=first.corrupted,
            meta={**first.meta, "specs": self.specs},
            # one plan per panel, so a heatmap click can re-run the cell it names
            rerun=Rerun.panels([r.rerun for r in parts]) if len(self.done) == len(parts) else None,
            top=_stacked(tops),
            baseline_top=first.baseline_top,
        )


def _unrun(partial: Result) -> Result:
    """A panel not run yet, shaped as `partial`: every value NaN, nothing to click."""
    nan = torch.full_like(partial.values, float("nan"))
    return replace(partial, values=nan, top=None, baseline_top=None, rerun=None)


def _stacked(tops: list[dict | None]) -> dict | None:
    """The panels' top tokens stacked like their values (a panel not run: id -1, NaN)."""
    known = next((t for t in tops if t is not None), None)
    if known is None:
        return None
    missing = {
        "ids": torch.full_like(known["ids"], -1),
        "probs": torch.full_like(known["probs"], float("nan")),
    }
    return {k: torch.stack([(t or missing)[k] for t in tops]) for k in known}


def _counts(line: Callable[[int, int], None]):
    """A `Panels` progress callback that passes on the counts only."""
    return lambda done, total, partial: line(done, total)
