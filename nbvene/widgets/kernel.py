"""Browser messages to a widget while its cell is still running. A running cell blocks the
kernel's main thread, so a Stop click would wait until the sweep ends; ipykernel 7's subshells
can take a comm's messages on their own thread instead, and that is what this arranges."""

from __future__ import annotations

import contextlib
import threading

_subshells: dict[int, str] = {}  # one per kernel, made on first use and kept


def _kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None)


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (where output goes to a notebook cell)."""
    return _kernel() is not None


def can_route() -> bool:
    """Whether this kernel can hand a widget's messages to another thread while a cell runs
    (ipykernel >= 7 with subshells; not in plain Python, not in older kernels)."""
    kernel = _kernel()
    return bool(
        kernel is not None
        and getattr(kernel, "_supports_kernel_subshells", False)
        and getattr(getattr(kernel, "shell_channel_thread", None), "manager", None)
    )


@contextlib.contextmanager
def messages_while_running(widget):
    """While the block runs, the browser's messages to `widget` (trait changes, such as its
    Stop button) are handled at once on a subshell thread, so its observers run during the
    cell. Yields whether that is possible here; outside a kernel it does nothing."""
    comm = getattr(widget, "comm", None)
    # ipykernel asks a comm `_reply_subshell_for` where its messages go (7.4); without that
    # question, or without subshells, a click waits for the cell: say so, do not pretend
    if comm is None or not hasattr(comm, "_reply_subshell_for") or not can_route():
        yield False
        return
    subshell = _subshell(_kernel())
    if subshell is None:
        yield False
        return
    # the kernel asks the comm which subshell gets its messages: answer ours, then forget it
    comm._reply_subshell_for = lambda data, default: subshell
    try:
        yield True
    finally:
        del comm._reply_subshell_for


def _subshell(kernel) -> str | None:
    """A subshell of this kernel, created on the shell channel thread (the only thread that
    may create one), waited for here."""
    if id(kernel) in _subshells:
        return _subshells[id(kernel)]
    thread = kernel.shell_channel_thread
    made: dict = {}
    ready = threading.Event()

    def create():
        try:
            made["id"] = thread.manager._create_subshell()
        except Exception:  # a kernel whose internals differ: no routing, Stop says interrupt
            pass
        finally:
            ready.set()

    thread.io_loop.add_callback(create)
    if not ready.wait(10) or "id" not in made:
        return None
    _subshells[id(kernel)] = made["id"]
    return made["id"]
