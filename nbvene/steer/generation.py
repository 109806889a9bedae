"""`Generation`: the baseline and steered texts of one batched run, side by side, with the
steered tokens that depart from the baseline marked."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import torch

from nbvene.spec import Spec


@dataclass
class Generation:
    """What `nv.generate` returns. Row 0 is the baseline (every strength 0); each other row is
    steered with `strengths[row]` (one strength per steering statement).

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

    @property
    def baseline(self) -> str:
        return self.texts[0]

    @property
    def steered(self) -> list[str]:
        return self.texts[1:]

    def marks(self, row: int) -> list[bool]:
        """For each token of `row`: whether it departs from the baseline's token at the same
        place (a different token, or past the baseline's end)."""
        base = self.ids[0]
        return [i >= len(base) or t != base[i] for i, t in enumerate(self.ids[row])]

    def columns(self) -> list[dict]:
        """The steering panel's columns: title and tokens with their marks, baseline first."""
        columns = []
        for row, label in enumerate(self.labels):
            marks = self.marks(row) if row else [False] * len(self.tokens[row])
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
        lines = [f"Generation from {self.prompt!r} ([…] departs from the baseline)"]
        for row, label in enumerate(self.labels):
            marks = self.marks(row) if row else [False] * len(self.tokens[row])
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
