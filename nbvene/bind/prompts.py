"""Prompts as the model sees them: token ids, token texts, character offsets."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nbvene.errors import NbveneError


@dataclass(frozen=True)
class Prompt:
    """One tokenised prompt (no padding)."""

    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    text: str | None = None
    offsets: tuple[tuple[int, int], ...] | None = None
    read_at: int = -1
    """Where the metric reads the prediction: the last token, or an encoder's mask token."""
    values: torch.Tensor | None = field(default=None, compare=False)
    """A float input instead of token ids: (features,) is one position, (seq, features) one
    position per row."""

    def __len__(self) -> int:
        if self.values is not None:
            return 1 if self.values.dim() == 1 else self.values.shape[0]
        return len(self.ids)

    def find(self, text: str) -> list[int]:
        """Positions of the tokens that make up `text` (its first occurrence), or []."""
        if self.text is None or self.offsets is None:
            return []
        start = self.text.find(text)
        if start < 0:
            return []
        stop = start + len(text)
        return [i for i, (a, b) in enumerate(self.offsets) if a < stop and b > start and b > a]


def tokenize(tokenizer, text: str) -> Prompt:
    """Tokenise one prompt with the user's tokenizer (special tokens as it adds them)."""
    if tokenizer is None:
        raise NbveneError(
            f"the prompt {text!r} is text, but no tokenizer was given",
            hint="pass tokenizer=... (to nv.run, nv.train, nv.load or evaluate), "
            "or give token ids as a tensor",
        )
    try:
        encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
        offsets = tuple(tuple(o) for o in encoded["offset_mapping"])
    except (NotImplementedError, TypeError, ValueError):
        encoded = tokenizer(text, add_special_tokens=True)
        offsets = None
    ids = tuple(int(i) for i in encoded["input_ids"])
    if not ids:
        raise NbveneError(f"the prompt {text!r} has no tokens")
    if offsets is None:
        offsets = _offsets_by_decoding(tokenizer, text, ids)
    tokens = tuple(tokenizer.decode([i]) for i in ids)
    mask = getattr(tokenizer, "mask_token_id", None)
    read_at = ids.index(mask) if mask is not None and mask in ids else len(ids) - 1
    return Prompt(ids, tokens, text, offsets, read_at)


def from_ids(ids: torch.Tensor | list[int], tokenizer=None) -> Prompt:
    """A prompt given as token ids."""
    ids = tuple(int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids))
    if tokenizer is not None:
        tokens = tuple(tokenizer.decode([i]) for i in ids)
    else:
        tokens = tuple(str(i) for i in ids)
    return Prompt(ids, tokens, None, None, len(ids) - 1)


def from_values(values: torch.Tensor) -> Prompt:
    """A prompt given as a float input: a feature vector, or one vector per position."""
    n = 1 if values.dim() == 1 else values.shape[0]
    tokens = ("<input>",) if values.dim() == 1 else tuple(str(i) for i in range(n))
    return Prompt((), tokens, None, None, n - 1, values)


def _offsets_by_decoding(tokenizer, text: str, ids: tuple[int, ...]):
    offsets, end = [], 0
    for n in range(1, len(ids) + 1):
        decoded = tokenizer.decode(list(ids[:n]), skip_special_tokens=False)
        new_end = min(len(decoded), len(text))
        offsets.append((end, new_end))
        end = new_end
    return tuple(offsets)


def pad(prompts: list[Prompt], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask: with right padding, every real token keeps the
    position (and position id) it has alone, whatever side the user's tokenizer pads.
    Float inputs are stacked (sequences padded with zeros on the right)."""
    width = max(len(p) for p in prompts)
    if prompts[0].values is not None:
        return _stacked(prompts, width, device)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = torch.tensor(p.ids)
        mask[i, : len(p)] = 1
    return ids.to(device), mask.to(device)


def _stacked(prompts: list[Prompt], width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    if prompts[0].values.dim() == 1:
        mask[:] = 1
        return torch.stack([p.values for p in prompts]).to(device), mask.to(device)
    first = prompts[0].values
    x = torch.zeros((len(prompts), width, *first.shape[1:]), dtype=first.dtype)
    for i, p in enumerate(prompts):
        x[i, : len(p)] = p.values
        mask[i, : len(p)] = 1
    return x.to(device), mask.to(device)
