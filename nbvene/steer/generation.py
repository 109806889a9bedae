"""`Generation`: the baseline and steered texts of one batched run, side by side, with the
steered tokens that depart from the baseline marked (steered-only generations mark nothing,
or mark against a baseline decoded before)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import torch

from nbvene.spec import Spec


@dataclass
class Generation:
    """What `nv.generate` returns. Row 0 is the baseline (every strength 0); each other row is
    steered with `strengths[row]` (one strength per steering statement). With
    `has_baseline=False` (`nv.generate(..., baseline=False)`) every row is steered, and the
    marks compare with `reference`, the baseline's token ids, when one is known.

    `tokens[row]` are the generated tokens' texts, `texts[row]` the generated text (cut just
    after a stop string), `metric` the spec's metric on each row's first next-token
    distribution (after the steered prompt), if the spec has one.
    """

    prompt: str
    labels: list[str]
    strengths: list[tuple[float, ...]]
    ids: list[list[int]]
    tokens: list[list[str]]
    texts: list[str]
    stopped: list[str]
    spec: Spec
    metric: torch.Tensor | None = None
    metric_name: str | None = None
    logits: torch.Tensor | None = None
    """(rows, vocab): each row's next-token logits after the (steered) prompt."""
    meta: dict = field(default_factory=dict)
    has_baseline: bool = True
    """Whether row 0 is the unsteered baseline."""
    reference: list[int] | None = None
    """Without a baseline row: the baseline's generated ids the marks compare with, if known."""

    @property
    def baseline(self) -> str | None:
        """The baseline's text (None when only steered rows were generated)."""
        return self.texts[0] if self.has_baseline else None

    @property
    def steered(self) -> list[str]:
        return self.texts[1:] if self.has_baseline else list(self.texts)

    def marks(self, row: int) -> list[bool]:
        """For each token of `row`: whether it departs from the baseline's token at the same
        place (a different token, or past the baseline's end); none for the baseline itself,
        nor without a baseline to compare with."""
        base = self.ids[0] if self.has_baseline else self.reference
        if base is None or (self.has_baseline and row == 0):
            return [False] * len(self.ids[row])
        return [i >= len(base) or t != base[i] for i, t in enumerate(self.ids[row])]

    def columns(self) -> list[dict]:
        """The steering panel's columns: title and tokens with their marks, baseline first."""
        columns = []
        for row, label in enumerate(self.labels):
            marks = self.marks(row)
            tokens = [
                {"text": text, "mark": mark}
                for text, mark in zip(self.tokens[row], marks, strict=True)
            ]
            columns.append({"title": label, "tokens": tokens})
        return columns

    def to_pandas(self):
        """One row per generated text: label, strengths, text, metric."""
        import pandas as pd

        frame = pd.DataFrame({"label": self.labels, "text": self.texts, "stopped": self.stopped})
        for k in range(len(self.strengths[0])):
            frame.insert(1 + k, f"strength_{k}", [s[k] for s in self.strengths])
        if self.metric is not None:
            frame[self.metric_name] = self.metric.tolist()
        return frame

    def __repr__(self) -> str:
        width = max(len(label) for label in self.labels)
        marked = self.has_baseline or self.reference is not None
        note = "[…] departs from the baseline" if marked else "steered only, no baseline"
        lines = [f"Generation from {self.prompt!r} ({note})"]
        for row, label in enumerate(self.labels):
            marks = self.marks(row)
            text = "".join(
                f"[{t}]" if m else t for t, m in zip(self.tokens[row], marks, strict=True)
            )
            value = "" if self.metric is None else f"  {self.metric_name}={self.metric[row]:.4g}"
            lines.append(f"{label:<{width}}  {text!r}{value}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = []
        for column in self.columns():
            spans = "".join(
                f"<mark>{html.escape(t['text'])}</mark>" if t["mark"] else html.escape(t["text"])
                for t in column["tokens"]
            )
            cells.append(
                f"<td style='vertical-align:top;padding:4px 12px;white-space:pre-wrap'>"
                f"<b>{html.escape(column['title'])}</b><br>{html.escape(self.prompt)}{spans}</td>"
            )
        metric = ""
        if self.metric is not None:
            values = ", ".join(f"{v:.4g}" for v in self.metric.tolist())
            metric = f"<div>{html.escape(self.metric_name)} per column: {values}</div>"
        return f"<table><tr>{''.join(cells)}</tr></table>{metric}"


def joined(baseline: Generation, steered: Generation) -> Generation:
    """One generation of `baseline`'s row (decoded once, e.g. cached) followed by the rows of
    the steered-only `steered`, as if they had been decoded in one batch."""

    def cat(first, rest):
        return None if first is None or rest is None else torch.cat([first[:1], rest])

    return Generation(
        prompt=steered.prompt,
        labels=baseline.labels[:1] + steered.labels,
        strengths=baseline.strengths[:1] + steered.strengths,
        ids=baseline.ids[:1] + steered.ids,
        tokens=baseline.tokens[:1] + steered.tokens,
        texts=baseline.texts[:1] + steered.texts,
        stopped=baseline.stopped[:1] + steered.stopped,
        spec=steered.spec,
        metric=cat(baseline.metric, steered.metric),
        metric_name=steered.metric_name,
        logits=cat(baseline.logits, steered.logits),
        meta=steered.meta,
    )
