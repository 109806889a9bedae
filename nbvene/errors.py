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


class UserCodeError(NbveneError):
    """The user's own code (`via {f}`) failed: placed on its spec line, the original error is
    its `__cause__`, and a notebook shows the traceback into the user's code."""


def error_at(
    spec,
    error: str | NbveneError,
    line: int,
    hint: str | None = None,
    token: str | None = None,
) -> NbveneError:
    """An error placed on a line of `spec` (anything with `line_text(line)`), the caret under
    `token` (else under the line's first word): the one way binding, running, steering and
    training name the spec line a problem is about.

    `error` is a message, or an error raised where the line was not known: one that names a
    line already is kept as it is; else the same message and hint (and kind of error) come
    back placed."""
    kind = NbveneError
    if isinstance(error, NbveneError):
        if error.line is not None:
            return error
        kind, error, hint = type(error), error.message, hint or error.hint
    text = spec.line_text(line)
    column = None
    if token is not None and token in text:
        column = text.index(token)
    elif text:
        column = len(text) - len(text.lstrip())
    return kind(error, line=line, text=text or None, column=column, hint=hint)


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
