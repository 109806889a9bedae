"""Prompts as token ids, and the edge-patched forward pass every circuit method runs.

In the edge-patched forward each receiver reads its own copy of the residual stream:

    input_r = resid − Σ_{s ∉ C(r)} (out_s − ref_s)

where C(r) are the senders whose edges into r are kept, out_s is sender s's output in this
run and ref_s its output in the corrupted run (or its mean over the clean batch). A head's
query, key and value inputs are separate copies: the hook on each projection recomputes the
norm and the head's slice of the projection from the adjusted stream; an MLP's input is the
norm before it applied to its copy, and the logits read the final norm of theirs. Several
kept-sets run at once as copies of the batch ("variants"). Hooks are always removed and the
weights never change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nbvene.errors import NbveneError


@dataclass(frozen=True)
class Inputs:
    """A batch of prompts: token ids and attention mask [B, T], the position whose logits the
    metric reads in each row [B] (the last real token), and the texts when made from text."""

    ids: torch.Tensor
    mask: torch.Tensor
    read: torch.Tensor
    texts: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    @classmethod
    def of(cls, ids: torch.Tensor, mask: torch.Tensor | None = None) -> Inputs:
        """Inputs from token ids (and a mask; all ones when None), read at each row's last
        real token."""
        ids = torch.as_tensor(ids).long()
        if ids.dim() == 1:
            ids = ids[None]
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).long()
        positions = torch.arange(ids.shape[1]).expand_as(ids)
        read = torch.where(mask.bool(), positions, -1).max(dim=1).values
        return cls(ids, mask, read)


def inputs(tokenizer, texts: Sequence[str]) -> Inputs:
    """Tokenize `texts` (padded as the tokenizer pads) into `Inputs`."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise NbveneError("circuit discovery needs at least one prompt")
    encoded = tokenizer(list(texts), return_tensors="pt", padding=True)
    made = Inputs.of(encoded["input_ids"], encoded["attention_mask"])
    return Inputs(made.ids, made.mask, made.read, tuple(texts))


def check_pair(clean: Inputs, corrupted: Inputs) -> None:
    """NbveneError unless `clean` and `corrupted` have as many rows, each pair as many tokens
    (the edge patch adds outputs position by position)."""
    if clean.rows != corrupted.rows:
        raise NbveneError(
            f"{clean.rows} clean prompts but {corrupted.rows} corrupted ones",
            hint="give one corrupted prompt per clean prompt",
        )
    lengths = clean.mask.sum(dim=1), corrupted.mask.sum(dim=1)
    for row in range(clean.rows):
        a, b = int(lengths[0][row]), int(lengths[1][row])
        if a != b or clean.ids.shape[1] != corrupted.ids.shape[1]:
            pair = _name(clean, corrupted, row)
            raise NbveneError(
                f"clean and corrupted prompts of pair {row} differ in length "
                f"({a} and {b} tokens): {pair}",
                hint="edges are patched position by position: make each corrupted prompt "
                "tokenize to as many tokens as its clean prompt",
            )


def _name(clean: Inputs, corrupted: Inputs, row: int) -> str:
    if clean.texts and corrupted.texts:
        return f"{clean.texts[row]!r} / {corrupted.texts[row]!r}"
    return f"row {row}"
