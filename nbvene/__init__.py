"""nbvene: causal interventions on PyTorch models, from a notebook cell or plain Python.

>>> import nbvene as nv
>>> model, tok = nv.models.load()
>>> res = nv.run('base: "..."\\nsource: "..."\\npatch: block_output layer=* pos=-1\\n'
...              'metric: logit_diff(" Paris", " Rome")', model=model, tokenizer=tok)
"""

__version__ = "0.1.0"

from nbvene import figures, interventions, models
from nbvene.api import plan, run
from nbvene.engine.lock import ModelLock, lock
from nbvene.errors import (
    GenerationInterrupted,
    Interrupted,
    NbveneError,
    SweepInterrupted,
    TrainingInterrupted,
)
from nbvene.path_patch import path_patch
from nbvene.results import Result
from nbvene.sites import SiteMap
from nbvene.spec import Spec, parse
from nbvene.steer import Generation, Vector, generate, vector
from nbvene.trace import causal_trace
from nbvene.train import Intervened, Trained, load, train


def load_ipython_extension(ipython) -> None:
    """`%load_ext nbvene`: the `%%intervene` and `%nbvene` magics (see `nbvene.magics`)."""
    from nbvene import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext nbvene`."""
    from nbvene import magics

    magics.unload_ipython_extension(ipython)


__all__ = [
    "Generation",
    "GenerationInterrupted",
    "Interrupted",
    "Intervened",
    "ModelLock",
    "NbveneError",
    "Result",
    "SiteMap",
    "Spec",
    "SweepInterrupted",
    "Trained",
    "TrainingInterrupted",
    "Vector",
    "__version__",
    "causal_trace",
    "figures",
    "generate",
    "interventions",
    "load",
    "load_ipython_extension",
    "lock",
    "models",
    "parse",
    "path_patch",
    "plan",
    "run",
    "train",
    "unload_ipython_extension",
    "vector",
]
