"""One nbvene call at a time per model. A run's hooks, attention edits and switched attention
implementation belong to the model, not to the thread, so a second thread running the same
model waits for the first (or, if the model's lock says so, is refused); other models run freely.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from torch import nn

from nbvene.errors import NbveneError


class ModelLock:
    """The lock of one model: re-entrant (a call that makes another on the same thread goes
    on), held for the whole of every nbvene call that runs the model.

    >>> nv.lock(model).wait = False      # a second thread is refused instead of waiting
    >>> with nv.lock(model):             # keep nbvene off the model during your own calls
    ...     model(ids)
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.wait = True
        """Whether a call from another thread waits for the running one (True) or raises
        `NbveneError` at once (False)."""

    def acquire(self, what: str = "this call") -> None:
        if not self._lock.acquire(blocking=self.wait):
            raise NbveneError(
                f"{what}: the model is running an nbvene call in another thread",
                hint="run one call at a time per model, or set nv.lock(model).wait = True "
                "so that calls from other threads wait their turn",
            )

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"ModelLock(wait={self.wait})"


# Keyed on the model object and dropped with it: nothing is set on the user's model.
_locks: weakref.WeakKeyDictionary[nn.Module, ModelLock] = weakref.WeakKeyDictionary()
_making = threading.Lock()


def lock(model: nn.Module) -> ModelLock:
    """The model's lock, made on first use (one per model, shared by every thread)."""
    if not isinstance(model, nn.Module):
        raise NbveneError(f"nv.lock takes a torch.nn.Module, got {type(model).__name__}")
    with _making:
        found = _locks.get(model)
        if found is None:
            found = _locks[model] = ModelLock()
        return found


@contextmanager
def holding(model, what: str = "this call") -> Iterator[None]:
    """Hold `model`'s lock for the block; anything that is not a module passes through (the
    call then reports it)."""
    if not isinstance(model, nn.Module):
        yield
        return
    owned = lock(model)
    owned.acquire(what)
    try:
        yield
    finally:
        owned.release()


def runs_model(fn: Callable) -> Callable:
    """Hold the lock of the `model=` argument for the whole call."""
    what = f"nv.{fn.__name__}"

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with holding(kwargs.get("model"), what):
            return fn(*args, **kwargs)

    return call
