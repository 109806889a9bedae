"""A sweep drawn as it runs: the heatmap is shown before the first forward pass and filled from
the engine's progress callback, in the executing cell, with a progress bar, ETA and Stop."""

from __future__ import annotations

import time

from nbvene.results import Result
from nbvene.widgets.heatmap import Heatmap


class LiveSweep:
    """The progress callback of a live sweep: `sweep(done, total, partial_result)` redraws the
    heatmap, and raises KeyboardInterrupt once Stop was clicked, which the engine turns into
    `nv.SweepInterrupted` with the cells measured so far."""

    def __init__(self, empty: Result, every: float = 0.1):
        self.widget = Heatmap(empty)
        self.every = every  # seconds between redraws: a fast sweep is not slowed by drawing
        self.started = time.perf_counter()
        self.drawn = 0.0
        self.widget.progress = {"state": "running", "done": 0, "total": empty.values.numel()}

    def __call__(self, done: int, total: int, partial: Result) -> None:
        now = time.perf_counter()
        if done == total or now - self.drawn >= self.every:
            elapsed = now - self.started
            eta = elapsed / done * (total - done) if done else None
            with self.widget.hold_sync():
                self.widget.show(partial)
                self.widget.progress = {
                    "state": "running",
                    "done": done,
                    "total": total,
                    "eta": eta,
                }
            self.drawn = now
        if self.widget.stop:  # set from the browser, on the subshell thread
            raise KeyboardInterrupt

    def finish(self, result: Result, stopped: bool) -> None:
        """The final (or partial) result, ready for clicks."""
        done = int(result.values.isfinite().sum())
        total = result.values.numel()
        with self.widget.hold_sync():
            self.widget.show(result)
            self.widget.progress = {
                "state": "stopped" if stopped else "done",
                "done": done,
                "total": total,
            }
