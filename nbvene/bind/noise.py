"""How big `corrupt: noise Sσ` is: σ is measured where the noise is added, the output of the
model's input embedding module (Gemma's scales its rows by √d_model), over every token id.
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK = 8192  # token ids embedded at a time: the whole vocabulary is never held at once


def embedding_std(model: nn.Module) -> float:
    """The standard deviation (unbiased, in float32 and accumulated in float64) of all the
    entries of the embeddings the model consumes: `embed(ids)` for every id of the vocabulary,
    with `embed = model.get_input_embeddings()`."""
    embed = model.get_input_embeddings()
    vocab = embed.weight.shape[0]
    device = embed.weight.device
    if device.type == "meta":  # offloaded: the module's own forward brings the weight in
        device = torch.device("cpu")

    shift = total = squares = 0.0
    with torch.no_grad():
        for start in range(0, vocab, CHUNK):
            ids = torch.arange(start, min(start + CHUNK, vocab), device=device)
            part = embed(ids.unsqueeze(0))[0].float()
            if start == 0:  # sums of deviations from a value near the mean do not cancel
                shift = float(part.mean())
            part = part - shift
            total += float(part.sum(dtype=torch.float64))
            squares += float((part * part).sum(dtype=torch.float64))
    count = vocab * embed.weight.shape[1]
    return max((squares - total * total / count) / (count - 1), 0.0) ** 0.5


def noise_draws(plan, model: nn.Module) -> dict[tuple[int, int], torch.Tensor] | None:
    """ROME's corruption of a bound plan (None without `corrupt:`): one draw per (example,
    sample), the same for every cell; drawn on the CPU from the seed, in one order, so every
    device and backend adds the same noise."""
    c = plan.corrupt
    if c is None:
        return None
    width = model.get_input_embeddings().weight.shape[1]
    generator = torch.Generator().manual_seed(c.seed)
    draws = {}
    for example, positions in enumerate(c.positions):
        for sample in range(c.samples):
            draws[example, sample] = c.std * torch.randn(
                (len(positions), width), generator=generator
            )
    return draws
