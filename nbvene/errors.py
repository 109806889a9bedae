"""The one error type nbvene raises for bad input, with the spec line it is about."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NbveneError(ValueError):
    """A problem with what the user asked for: names the spec line, the bad token and a fix.

    >>> raise NbveneError("unknown component 'blok'", line=3, hint="did you mean 'block_output'?")
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        text: str | None = None,
        column: int | None = None,
        hint: str | None = None,
    ):
        self.message = message
        self.line = line
        self.text = text
        self.column = column
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        parts = [f"{where}{self.message}"]
        if self.text is not None:
            parts.append(f"    {self.text}")
            if self.column is not None:
                parts.append("    " + " " * self.column + "^")
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)

    def at(self, line: int, text: str, column: int | None = None) -> NbveneError:
        """The same error, placed on a spec line (kept where it was placed already)."""
        if self.line is not None:
            return self
        return NbveneError(self.message, line=line, text=text, column=column, hint=self.hint)


class UserCodeError(NbveneError):
    """The user's own code (`via {f}`) failed: placed on its spec line, the original error is
    its `__cause__`, and a notebook shows the traceback into the user's code."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt word, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or a Stop button) during a run: still a KeyboardInterrupt, so whatever stops on
    Ctrl-C stops, with what was done in `.result`. The model is clean: no hooks left, weights
    unchanged, modes restored."""

    what = "run"

    def __init__(self, result):
        super().__init__(f"{self.what} interrupted: the partial result is in .result")
        self.result = result


class SweepInterrupted(Interrupted):
    """A sweep stopped by KeyboardInterrupt; `.result` holds what was measured (cells not run
    are NaN; all of them when it stopped before the grid). The model is clean: no hooks left,
    weights unchanged."""

    what = "sweep"


class GenerationInterrupted(Interrupted):
    """`nv.generate` stopped by KeyboardInterrupt; `.result` is a `Generation` with the tokens
    generated so far (`stopped` says "interrupted" for the rows it cut short)."""

    what = "generation"


class TrainingInterrupted(Interrupted):
    """`nv.train` stopped by KeyboardInterrupt; `.result` is a `Trained` with the interventions
    as of the last finished optimizer step, usable and savable, and the loss curve so far:
    `history` (an epoch cut short is its last record, marked "interrupted") and
    `settings["interrupted_after_steps"]`. Its scores are not measured (NaN): `.evaluate()`."""

    what = "training"
