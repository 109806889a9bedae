"""Fault injection for the tests of out-of-memory and interrupts: a pre-hook that counts the
forward passes through a module (with each one's rows) and raises on the passes chosen, the
forms an out-of-memory takes, and a snapshot that says whether a model came out clean."""

from __future__ import annotations

import signal

import torch
from torch import nn

OUT_OF_MEMORY = {
    "OutOfMemoryError": lambda: torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"
    ),
    "cuda-message": lambda: RuntimeError(
        "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total capacity)"
    ),
    "cpu-message": lambda: RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 1073741824 bytes. Error code 12 (Cannot allocate memory)"
    ),
}


class Passes:
    """Counts forward passes through `module` and their rows (its first input's batch size);
    `fail(call, rows)` may return an exception to raise there (calls count from 1), or the
    string "SIGINT" to interrupt by signal, as Ctrl-C does."""

    def __init__(self, module: nn.Module, fail=None, *, grad_only: bool = False):
        self.rows: list[int] = []
        self.fail = fail
        self.grad_only = grad_only
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)
        # A job started in the background by a script (`make minimum &`) inherits SIGINT
        # ignored, and Python then keeps it so: give Ctrl-C its usual meaning while we inject.
        self.sigint = signal.getsignal(signal.SIGINT)
        if self.sigint is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def _hook(self, module, args, kwargs):
        if self.grad_only and not torch.is_grad_enabled():
            return
        x = args[0] if args else kwargs.get("hidden_states", next(iter(kwargs.values())))
        self.rows.append(x.shape[0])
        error = self.fail(len(self.rows), x.shape[0]) if self.fail else None
        if error == "SIGINT":
            signal.raise_signal(signal.SIGINT)
        elif error is not None:
            raise error

    def __enter__(self) -> Passes:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()
        if self.sigint is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def on_call(*calls: int, error):
    """A `fail` that raises `error()` on the passes numbered `calls`."""
    return lambda call, rows: error() if call in calls else None


class Snapshot:
    """What a run must leave as it found it: hooks, weights (bitwise), requires_grad flags,
    train/eval modes and the attention implementation."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.hooks = hook_count(model)
        self.weights = {k: v.clone() for k, v in model.state_dict().items()}
        self.flags = [p.requires_grad for p in model.parameters()]
        self.modes = [m.training for m in model.modules()]
        self.attention = getattr(getattr(model, "config", None), "_attn_implementation", None)

    def assert_clean(self) -> None:
        model = self.model
        assert hook_count(model) == self.hooks
        after = model.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in self.weights.items())
        assert [p.requires_grad for p in model.parameters()] == self.flags
        assert [m.training for m in model.modules()] == self.modes
        config = getattr(model, "config", None)
        assert getattr(config, "_attn_implementation", None) == self.attention


def hook_count(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def assert_keeps_finished(partial, full) -> None:
    """An interrupted sweep's result: some cells and not all finished, with the values the
    whole sweep gives them."""
    finished = ~partial.values.isnan()
    assert 0 < int(finished.sum()) < partial.values.numel()
    torch.testing.assert_close(partial.values[finished], full.values[finished])
