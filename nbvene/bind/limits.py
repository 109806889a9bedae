"""What a model can take, read from it before anything runs: the token ids its embedding holds,
the scores it outputs, its context window; and how many cells a plan may lay out."""

from __future__ import annotations

from torch import nn

MAX_CELLS = 1_000_000
"""The most patched runs (grid cells × examples × noise samples) a plan lays out unless raised
with `max_cells=`."""

_CONTEXT = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length")
"""Config fields that give a model's context window, by architecture (GPT-2: n_positions)."""


def vocabulary(model: nn.Module) -> int | None:
    """How many token ids the model's input embedding holds; None if it takes no token ids."""
    return _rows(model, "get_input_embeddings", "num_embeddings")


def outputs(model: nn.Module) -> int | None:
    """How many next-token scores the model's output layer gives; None when it has none."""
    return _rows(model, "get_output_embeddings", "out_features")


def context(model: nn.Module) -> int | None:
    """The most positions the model takes; None for a model without a limit (or one nbvene
    cannot read)."""
    config = getattr(model, "config", None)
    for name in _CONTEXT:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _rows(model: nn.Module, getter: str, size: str) -> int | None:
    try:
        layer = getattr(model, getter)()
    except (AttributeError, NotImplementedError, TypeError):
        return None
    value = getattr(layer, size, None)
    return value if isinstance(value, int) else None
