"""`Spec`: a whole spec, as data (the statements' values in their fields), and what a spec is
for (does it steer? has it sliders?). `str(spec)` is the text that made it, or its canonical
form (`nbvene.spec.text`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nbvene.spec.ast import (
    Contrast,
    Corrupt,
    Discover,
    Edit,
    Estimate,
    Generate,
    Metric,
    Phase,
    Prompts,
    Slider,
    Source,
    Strengths,
    Var,
)
from nbvene.spec.text import format_spec


@dataclass(frozen=True)
class Spec:
    """A whole spec: prompts, an optional corruption, interventions, a metric and a label."""

    base: Prompts | None = None
    source: Prompts | None = None
    corrupt: Corrupt | None = None
    interventions: tuple[Edit, ...] = ()
    """The edits (`patch:`, `add:`, ... lines), in the order they are written."""
    metric: Metric | None = None
    label: Var | None = None
    """`label: {labels}`: the target outputs `nv.train` fits the interventions to."""
    estimate: Estimate = "exact"
    """`estimate: attribution`: a first-order estimate of the sweep (attribution patching)."""
    sources: tuple[Source, ...] = ()
    """Named sources (`source s1: ...`), in the order they are written."""
    generate: Generate | None = None
    """`generate: ...`: a steering spec that generates text."""
    discover: Discover | None = None
    """`discover: circuit by eap ...`: a circuit discovery spec (`nv.discover`)."""
    lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    text: str = field(default="", compare=False, hash=False)

    def __str__(self) -> str:
        """The text that made the spec (as written), or its canonical form."""
        return self.text.strip() or format_spec(self)

    def line_text(self, line: int) -> str:
        """The source text of a spec line (1-based), for error messages."""
        rows = self.text.splitlines()
        return rows[line - 1] if 0 < line <= len(rows) else ""


def is_steering(spec: Spec) -> bool:
    """Whether a spec steers (runs through `nbvene.steer`): it generates, has `steer:`, makes
    its vector from prompts, uses a slider, a strength sweep or `pos=prompt|generated`.
    In a steering spec `pos=*` means every position at once, not a sweep."""
    if spec.generate is not None:
        return True
    for i in spec.interventions:
        if i.verb == "steer" or any(isinstance(s, Phase) for _, s in i.where):
            return True
        if i.by is not None and (
            isinstance(i.by.vector, Contrast) or isinstance(i.by.scale, Slider | Strengths)
        ):
            return True
    return False


def has_sliders(spec: Spec) -> bool:
    """Whether a steering spec has `slider(...)` strengths (it makes a steering panel)."""
    return any(i.by is not None and isinstance(i.by.scale, Slider) for i in spec.interventions)
