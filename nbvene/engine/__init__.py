"""The engine: runs a Plan with hooks it owns, batching grid cells into forward passes."""

from nbvene.engine.hooks import Hooks
from nbvene.engine.run import Outcome, execute

__all__ = ["Hooks", "Outcome", "execute"]
