"""A sweep drawn as it runs: the heatmap is shown before the first forward pass and filled from
the engine's progress callback, in the executing cell, with a progress bar, ETA and Stop. A
sweep with no heatmap gets one line of text instead, emptied when it ends, so a saved notebook
keeps no progress bar and no widget that cannot be drawn again."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from nbvene.results import Result
from nbvene.widgets.display import keep_view
from nbvene.widgets.heatmap import Heatmap
from nbvene.widgets.kernel import messages_while_running


class LiveSweep:
    """The progress callback of a live sweep: `sweep(done, total, partial_result)` redraws the
    heatmap, and raises KeyboardInterrupt once Stop was clicked, which the engine turns into
    `nv.SweepInterrupted` with the cells measured so far. `stopped()` says whether Stop was
    clicked, for the engine to ask between blocks."""

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
        if self.stopped():
            raise KeyboardInterrupt

    def stopped(self) -> bool:
        """Whether Stop was clicked (set from the browser, on the subshell thread)."""
        return bool(self.widget.stop)

    def asks(self, stop: Callable[[], bool] | None = None) -> Callable[[], bool]:
        """What the engine asks between blocks: whether Stop was clicked, or the user's own
        `stop()` says so."""
        return self.stopped if stop is None else lambda: self.stopped() or stop()

    def finish(self, result: Result, stopped: bool) -> None:
        """The final (or partial) result, ready for clicks; the live display becomes the
        Result's own display: the same widget (not a second one) plus the static figure, so a
        saved notebook shows the heatmap on GitHub and nbviewer."""
        done = int(result.values.isfinite().sum())
        total = result.values.numel()
        with self.widget.hold_sync():
            self.widget.show(result)
            self.widget.progress = {
                "state": "stopped" if stopped else "done",
                "done": done,
                "total": total,
            }
        keep_view(result, self.widget)
        self.widget.live_display.update(result)


@contextlib.contextmanager
def live_sweep(empty: Result) -> Iterator[LiveSweep]:
    """Show a heatmap of `empty` (every cell NaN) in the executing cell and yield its
    `LiveSweep`; while the block runs, a Stop click reaches it at once where the kernel allows
    (`messages_while_running`)."""
    from IPython.display import display

    sweep = LiveSweep(empty)
    with messages_while_running(sweep.widget) as stoppable:
        # set before the widget is shown: its view draws the Stop button when it is first
        # drawn and when the progress changes, and the first change comes after a forward pass
        sweep.widget.stoppable = stoppable
        sweep.widget.live_display = display(sweep.widget, display_id=True)
        yield sweep


class TextProgress:
    """`progress(done, total)` as one line of text in the executing cell (`nbvene: 12 of 90
    cells · about 3 s left`), redrawn in place at most every `every` seconds and emptied by
    `close()`: what a notebook shows for a sweep with no live heatmap, instead of a progress
    widget that a saved notebook could not draw again."""

    def __init__(self, unit: str = "cells", note: str | None = None, every: float = 0.5):
        from IPython.display import display

        self.unit, self.note, self.every = unit, note, every
        self.started = time.perf_counter()
        self.drawn = 0.0
        self.handle = display({"text/plain": "nbvene: starting…"}, raw=True, display_id=True)

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.drawn < self.every and done < total:
            return
        elapsed = now - self.started
        line = f"nbvene: {done} of {total} {self.unit}"
        if self.note:
            line += f" ({self.note})"
        if 0 < done < total:
            line += f" · about {elapsed / done * (total - done):.0f} s left"
        self.handle.update({"text/plain": line}, raw=True)
        self.drawn = now

    def close(self) -> None:
        """Empty the line: nothing is left in the cell's output once the sweep ends."""
        self.handle.update({"text/plain": ""}, raw=True)
