"""Other engines a Plan can run on: `nnsight` runs it through nnsight's tracing (locally, or on
NDIF with `remote=True`), for models that are `nnsight.LanguageModel`s."""

from nbvene.backends.nnsight import (
    generated,
    is_nnsight,
    run_plan,
    steered_values,
    unsupported,
)

__all__ = ["generated", "is_nnsight", "run_plan", "steered_values", "unsupported"]
