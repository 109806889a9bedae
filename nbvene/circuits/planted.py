"""A planted circuit: a two-layer attention-only GPT-2 trained in a few seconds to copy the
first token of a prompt to the end through a known route, so that circuit discovery can be
checked against the truth.

The prompt is `answer f1 f2 f3` (fillers from a fixed set). Head a0.h0 attends from each
position to the previous one, so it moves the answer into position 1; head a1.h1 attends from
the last position to position 1 and writes the answer to the logits. The other heads attend
to their own position and the MLPs are zero. The corrupted prompt changes only the answer, so
the true circuit is `embed -> a0.h0.v`, `a0.h0 -> a1.h1.v`, `a1.h1 -> logits`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nbvene.circuits.forward import Inputs
from nbvene.circuits.graph import Edge


@dataclass
class Planted:
    """The trained model and its tokenizer, clean and corrupted prompts (texts and `Inputs`),
    the answer token ids (clean, corrupted), the logit-difference `metric`, and `edges`, the
    true circuit."""

    model: nn.Module
    tokenizer: object
    clean_texts: list[str]
    corrupted_texts: list[str]
    clean: Inputs
    corrupted: Inputs
    answers: torch.Tensor
    wrong: torch.Tensor
    metric: Callable[[torch.Tensor], torch.Tensor]
    edges: frozenset[Edge]


def planted(seed: int = 0) -> Planted:
    """Train the planted-circuit model (seeded, deterministic, no downloads)."""
    raise NotImplementedError
