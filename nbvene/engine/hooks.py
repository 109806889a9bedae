"""One context manager that owns the hooks it registers and always removes exactly those.

Modelled on baukit's `Trace`: whatever happens inside the `with` (an exception, a
KeyboardInterrupt), the model leaves it with the hooks it had before, and no others.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nbvene.engine.attention import on_weights
from nbvene.sites import Site

Edit = Callable[[torch.Tensor], torch.Tensor | None]
"""Sees the tensor at a site; returns a replacement, or None to leave it as it is."""


class Hooks:
    """Register edits on modules' inputs or outputs for the length of a `with` block.

    >>> with Hooks(model) as hooks:  # doctest: +SKIP
    ...     hooks.on("model.layers.3", "output", lambda h: h * 0)
    ...     model(ids)
    """

    def __init__(self, model: nn.Module, keep: list[Hooks] | None = None):
        self.model = model
        self.keep = keep
        """If given, a `with` block that ends normally leaves its hooks registered and adds itself
        to `keep`, whose owner removes them (gradient checkpointing runs blocks again in the
        backward pass, and the edits must be there then too)."""
        self._handles: list[torch.utils.hooks.RemovableHandle | Callable[[], None]] = []

    def on(self, module: str | nn.Module, io: str, edit: Edit, *, first: bool = False) -> None:
        """Edit `module`'s "input", "output", or attention "weights" (its probabilities);
        `first` runs the edit before the module's other hooks (registered earlier or later)."""
        target = self.model.get_submodule(module) if isinstance(module, str) else module
        if io == "weights":
            handle = on_weights(self.model, target, edit)
        elif io == "output":
            handle = target.register_forward_hook(_output_hook(edit), prepend=first)
        else:
            handle = target.register_forward_pre_hook(
                _input_hook(edit), with_kwargs=True, prepend=first
            )
        self._handles.append(handle)

    def at(self, site: Site, edit: Edit) -> None:
        """Edit a site's tensor, wherever the site lives."""
        if site.residual is not None:
            self.on_sum(site.residual, site.module, edit)
        else:
            self.on(site.module, site.io, edit)

    def on_sum(self, residual: str, module: str, edit: Edit) -> None:
        """Edit the sum of `residual`'s input and `module`'s output, as the block adds them:
        the output is replaced by the edited sum minus the residual."""
        seen: list[torch.Tensor] = []

        def keep(args, kwargs):
            seen[:] = [args[0] if args else kwargs["hidden_states"]]

        def edit_sum(output: torch.Tensor) -> torch.Tensor | None:
            new = edit(seen[0] + output)
            return None if new is None else new - seen[0]

        self.on_call(self.model.get_submodule(residual), keep)
        self.on(module, "output", edit_sum)

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
        if self.keep is not None and exc_info[0] is None:
            self.keep.append(self)
        else:
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
