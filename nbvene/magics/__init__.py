"""The notebook layer: `%load_ext nbvene` registers the `%%intervene` cell magic, the `%nbvene`
line magic and tab completion inside spec cells. The magics only parse, call `nv.run` and
display; everything they do is reachable from plain Python.
"""

from __future__ import annotations

from nbvene.magics.cell import CellError
from nbvene.magics.complete import matcher
from nbvene.magics.magic import Intervene

__all__ = ["CellError", "Intervene", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython) -> None:
    """Register the magics, their `%config Intervene` options and the completer on a shell."""
    unload_ipython_extension(ipython)  # loading twice leaves one of each
    magic = Intervene(shell=ipython)
    ipython.register_magics(magic)
    completer = getattr(ipython, "Completer", None)
    if completer is not None and hasattr(completer, "custom_matchers"):
        try:
            magic.matcher = matcher(magic.context)
        except ImportError:  # IPython < 8.6 has no whole-cell matchers: no completion
            magic.matcher = None
        else:
            completer.custom_matchers.insert(0, magic.matcher)


def unload_ipython_extension(ipython) -> None:
    """Remove exactly what `load_ipython_extension` added."""
    manager = ipython.magics_manager
    magic = manager.registry.pop(Intervene.__name__, None)
    if magic is None:
        return
    for kind, names in type(magic).magics.items():
        for name in names:
            bound = manager.magics[kind].get(name)
            if getattr(bound, "__self__", None) is magic:
                del manager.magics[kind][name]
    if magic in ipython.configurables:
        ipython.configurables.remove(magic)
    completer = getattr(ipython, "Completer", None)
    found = getattr(magic, "matcher", None)
    if completer is not None and found in getattr(completer, "custom_matchers", []):
        completer.custom_matchers.remove(found)
