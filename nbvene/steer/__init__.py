"""Steering and generation: vectors from prompts, interventions while generating (with the KV
cache kept correct), baseline and steered text side by side, and the strength knob."""

from nbvene.steer.extract import vector
from nbvene.steer.generation import Generation
from nbvene.steer.knob import Knob
from nbvene.steer.run import generate, measure
from nbvene.steer.vector import Vector

__all__ = ["Generation", "Knob", "Vector", "generate", "measure", "vector"]
