"""nbvene: causal interventions on PyTorch models, from a notebook cell or plain Python.

>>> import nbvene as nv
>>> model, tok = nv.models.load()
>>> res = nv.run('base: "..."\\nsource: "..."\\npatch: block_output layer=* pos=-1\\n'
...              'metric: logit_diff(" Paris", " Rome")', model=model, tokenizer=tok)

The names here are the ones the README and docs/ use, no more. Importing the package imports
no transformers (nor pandas, ipywidgets, anywidget or Altair): each is imported where first
needed, so `import nbvene` costs little beyond `import torch` (benchmarks/import_time.py).
"""

import warnings

from nbvene import figures, interventions, models, steer
from nbvene.api import discover, plan, run
from nbvene.circuits import Circuit
from nbvene.engine.lock import lock
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
from nbvene.train import Intervened, Trained, load_interventions, train
from nbvene.version import __version__ as __version__

__all__ = [
    "Circuit",
    "Generation",
    "GenerationInterrupted",
    "Interrupted",
    "Intervened",
    "NbveneError",
    "Result",
    "SiteMap",
    "Spec",
    "SweepInterrupted",
    "Trained",
    "TrainingInterrupted",
    "Vector",
    "causal_trace",
    "discover",
    "figures",
    "generate",
    "interventions",
    "load_interventions",
    "lock",
    "models",
    "parse",
    "path_patch",
    "plan",
    "run",
    "steer",
    "train",
    "vector",
]


def load_ipython_extension(ipython) -> None:
    """`%load_ext nbvene`: the `%%intervene` and `%nbvene` magics (see `nbvene.magics`)."""
    from nbvene import magics

    magics.load_ipython_extension(ipython)


def unload_ipython_extension(ipython) -> None:
    """`%unload_ext nbvene`."""
    from nbvene import magics

    magics.unload_ipython_extension(ipython)


def __getattr__(name: str):
    """`nv.load`, the old name of `nv.load_interventions`, still works but warns (PEP 562)."""
    if name == "load":
        warnings.warn(
            "nv.load is deprecated: use nv.load_interventions (nv.models.load loads models)",
            DeprecationWarning,
            stacklevel=2,
        )
        return load_interventions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
