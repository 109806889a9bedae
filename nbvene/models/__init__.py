"""Models to intervene on: tiny random ones of each architecture family for tests (`tiny`), and
the embedded SmolLM2-135M-Instruct, loaded offline from a cached GGUF file (`load`).
"""

from nbvene.models.families import FAMILIES, tiny
from nbvene.models.smollm2 import load

__all__ = ["FAMILIES", "load", "tiny"]
