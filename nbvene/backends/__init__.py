"""Other engines a Plan can run on: `nnsight` runs it through nnsight's tracing (locally, or on
NDIF with `remote=True`), for models that are `nnsight.LanguageModel`s."""

from nbvene.backends.nnsight import run_plan, unsupported

__all__ = ["run_plan", "unsupported"]
