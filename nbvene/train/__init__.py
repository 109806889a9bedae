"""Trainable interventions and their training: `nv.train`, `load_interventions`,
`nv.Intervened`.

The interventions (`via rotated(k=1)` in a spec) are also classes here, for use from Python:
`from nbvene.train import Rotated` (they live in `nbvene.interventions.trainable`, below the
binder that builds them from a spec).
"""

import warnings

from nbvene.interventions.trainable import (
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
from nbvene.train.composed import Intervened
from nbvene.train.loop import train
from nbvene.train.trained import Trained, load_interventions


def load(path, **kwargs) -> Trained:
    """Deprecated: `load_interventions(path, model=..., ...)`, the same function under a name
    that says what it loads."""
    warnings.warn(
        "nbvene.train.load is deprecated: call load_interventions (nv.load_interventions)",
        DeprecationWarning,
        stacklevel=2,
    )
    return load_interventions(path, **kwargs)


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
