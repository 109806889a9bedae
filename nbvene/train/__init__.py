"""Trainable interventions and their training: `nv.train`, `nv.load`, `nv.Intervened`.

The interventions (`via rotated(k=1)` in a spec) are also classes here, for use from Python:
`from nbvene.train import Rotated`.
"""

from nbvene.train.composed import Intervened
from nbvene.train.interventions import (
    CONSTRUCTORS,
    Boundless,
    Interchange,
    LoReFT,
    LowRankAdd,
    LowRankRotated,
    Rotated,
    SigmoidMask,
    Trainable,
)
from nbvene.train.loop import train
from nbvene.train.trained import Trained, load
from nbvene.train.trained import load as load_interventions

__all__ = [
    "CONSTRUCTORS",
    "Boundless",
    "Interchange",
    "Intervened",
    "LoReFT",
    "LowRankAdd",
    "LowRankRotated",
    "Rotated",
    "SigmoidMask",
    "Trainable",
    "Trained",
    "load",
    "load_interventions",
    "train",
]
