"""Models to intervene on: tiny random ones of each architecture family for tests (`tiny`), and
`load`: the embedded SmolLM2-135M-Instruct offline by default, or any saved or hub model.
"""

from nbvene.models.loader import load
from nbvene.models.tiny_models import FAMILIES, tiny

__all__ = ["FAMILIES", "load", "tiny"]
