"""How many rows fit in one forward pass under a memory budget."""

from __future__ import annotations

import re

from nbvene.errors import NbveneError
from nbvene.plan.plan import Plan

_UNITS = {"": 1, "b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "kib": 2**10, "mib": 2**20,
          "gib": 2**30}  # fmt: skip


def parse_bytes(budget: int | str) -> int:
    """`2**30`, `"512MB"`, `"2 GB"` → bytes (binary units)."""
    if isinstance(budget, int):
        return budget
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*", str(budget).lower())
    if not m:
        raise NbveneError(
            f"max_memory={budget!r} is not a size", hint='write e.g. max_memory="2GB" or 2**31'
        )
    unit = (m.group(2) or "").rstrip("b") + ("b" if m.group(2) else "")
    return int(float(m.group(1)) * _UNITS.get(unit, 1))


def row_bytes(plan: Plan) -> int:
    """A generous estimate of the memory one row needs during a forward pass without grad:
    the live activations of one block (residual, attention scores, MLP) and the logits row."""
    config = getattr(plan.model, "config", None)
    seq = max(len(p) for p in plan.base)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 1024)
    inner = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    inner = inner or 4 * hidden
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 16)
    vocab = getattr(config, "vocab_size", 50_000)
    dtype = next(plan.model.parameters()).element_size()
    per_token = 8 * hidden + 3 * inner + 2 * heads * seq
    return dtype * seq * per_token + 4 * vocab


def rows_within(plan: Plan, budget: int | str) -> int:
    """The largest chunk that fits `budget`; a clear error when not even one row does."""
    limit = parse_bytes(budget)
    need = row_bytes(plan)
    if need > limit:
        raise NbveneError(
            f"max_memory={budget!r} is less than one row needs (about {need / 2**20:.1f} MiB "
            f"for {max(len(p) for p in plan.base)} tokens)",
            hint="raise max_memory, or shorten the prompts",
        )
    return max(1, limit // need)
