"""One context manager that owns the hooks it registers and always removes exactly those.

Modelled on baukit's `Trace`: whatever happens inside the `with` (an exception, a
KeyboardInterrupt), the model leaves it with the hooks it had before, and no others.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nbvene.engine.attention import on_weights

Edit = Callable[[torch.Tensor], torch.Tensor | None]
"""Sees the tensor at a site; returns a replacement, or None to leave it as it is."""


class Hooks:
    """Register edits on modules' inputs or outputs for the length of a `with` block.

    >>> with Hooks(model) as hooks:
    ...     hooks.on("model.layers.3", "output", lambda h: h * 0)
    ...     model(ids)
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._handles: list[torch.utils.hooks.RemovableHandle | Callable[[], None]] = []

    def on(self, module: str | nn.Module, io: str, edit: Edit) -> None:
        """Edit `module`'s "input", "output", or attention "weights" (its probabilities)."""
        target = self.model.get_submodule(module) if isinstance(module, str) else module
        if io == "weights":
            handle = on_weights(self.model, target, edit)
        elif io == "output":
            handle = target.register_forward_hook(_output_hook(edit))
        else:
            handle = target.register_forward_pre_hook(_input_hook(edit), with_kwargs=True)
        self._handles.append(handle)

    def on_call(self, module: nn.Module, see) -> None:
        """Call `see(args, kwargs)` with everything `module` is called with; change nothing."""
        self._handles.append(
            module.register_forward_pre_hook(lambda m, a, k: see(a, k), with_kwargs=True)
        )

    def remove(self) -> None:
        while self._handles:
            handle = self._handles.pop()
            handle() if callable(handle) else handle.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()


def _output_hook(edit: Edit):
    def hook(module, args, output):
        if isinstance(output, torch.Tensor):
            new = edit(output)
            return output if new is None else new
        new = edit(output[0])
        if new is None:
            return output
        # Keep the container type (tuple, or a ModelOutput-like tuple subclass).
        return (new, *output[1:]) if type(output) is tuple else _replace_first(output, new)

    return hook


def _replace_first(output, new):
    first = next(iter(output.keys())) if hasattr(output, "keys") else None
    if first is None:
        return type(output)((new, *output[1:]))
    output[first] = new
    return output


def _input_hook(edit: Edit):
    def hook(module, args, kwargs):
        if args:
            new = edit(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        name = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
        new = edit(kwargs[name])
        return None if new is None else (args, {**kwargs, name: new})

    return hook
