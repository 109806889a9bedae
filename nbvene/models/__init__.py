"""Models to intervene on: tiny random ones of each architecture family for tests (`tiny`), and
`load`: the embedded SmolLM2-135M-Instruct offline by default, or any saved or hub model.
"""

from nbvene.models.families import FAMILIES, tiny
from nbvene.models.loader import load

__all__ = ["FAMILIES", "load", "tiny"]
