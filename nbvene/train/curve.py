"""A live loss curve for `nv.train` in a notebook: an inline SVG, drawn again in place through an
IPython display handle as training goes (throttled); no widget package needed."""

from __future__ import annotations

import html
import time
from collections.abc import Callable


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (which can show HTML), not a terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _display(html_text: str):
    from IPython.display import HTML, display

    handle = display(HTML(html_text), display_id=True)
    return lambda text: handle.update(HTML(text))


class LiveCurve:
    """Training loss per step (a line) and held-out loss per epoch (dots), over a step axis that
    spans the whole run, so the line grows to the right.

    `show(html) -> update(html)` puts the first drawing on screen and returns how to replace it
    (by default IPython's `display(..., display_id=True)`); `interval` seconds at least pass
    between drawings, except the last (`close()`).
    """

    WIDTH, HEIGHT, MARGIN = 480, 180, 40

    def __init__(
        self,
        total_steps: int,
        epochs: int,
        *,
        show: Callable[[str], Callable[[str], None]] | None = None,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.epochs = max(total_steps, 1), epochs
        self.losses: list[float] = []
        self.held: list[tuple[int, float]] = []
        self.last: dict = {}
        self.show, self.update = show or _display, None
        self.interval, self.clock = interval, clock
        self.drawn_at = -float("inf")
        self.drawings = 0

    def step(self, loss: float) -> None:
        self.losses.append(float(loss))
        self._draw()

    def epoch(self, record: dict) -> None:
        self.last = dict(record)
        if "held_out_loss" in record:
            self.held.append((len(self.losses), float(record["held_out_loss"])))
        self._draw()

    def close(self) -> None:
        self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.drawn_at < self.interval:
            return
        self.drawn_at = now
        svg = self.svg()
        if self.update is None:
            self.update = self.show(svg)
        else:
            self.update(svg)
        self.drawings += 1

    def svg(self) -> str:
        """The curve as an SVG document."""
        w, h, m = self.WIDTH, self.HEIGHT, self.MARGIN
        values = self.losses + [v for _, v in self.held]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if high - low < 1e-12:
            low, high = low - 0.5, high + 0.5

        def x(step: float) -> float:
            return m + (w - 2 * m) * step / self.total

        def y(value: float) -> float:
            return h - m + (2 * m - h) * (value - low) / (high - low)

        line = " ".join(f"{x(i + 1):.1f},{y(v):.1f}" for i, v in enumerate(self.losses))
        dots = "".join(
            f'<circle class="held-out" cx="{x(s):.1f}" cy="{y(v):.1f}" r="3" fill="#d95f02"/>'
            for s, v in self.held
        )
        title = f"epoch {self.last.get('epoch', 0)}/{self.epochs}"
        if self.losses:
            title += f" · loss {self.losses[-1]:.4f}"
        if "held_out_iia" in self.last:
            title += f" · held-out iia {self.last['held_out_iia']:.3f}"
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'font-family="sans-serif" font-size="11">'
            f'<rect x="{m}" y="{m / 2}" width="{w - 2 * m}" height="{h - 1.5 * m}" '
            'fill="none" stroke="#ccc"/>'
            f'<text x="{m}" y="14">{html.escape(title)}</text>'
            f'<text x="{m - 4}" y="{y(high) + 4:.1f}" text-anchor="end">{high:.3g}</text>'
            f'<text x="{m - 4}" y="{y(low) + 4:.1f}" text-anchor="end">{low:.3g}</text>'
            f'<text x="{w - m}" y="{h - m + 14}" text-anchor="end">step {self.total}</text>'
            f'<polyline class="loss" points="{line}" fill="none" stroke="#1b9e77"/>'
            f"{dots}</svg>"
        )
