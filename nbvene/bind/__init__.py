"""The binding layer: a spec read against one model, checked before anything runs.

Names are looked up, prompts tokenised, positions, layers and heads resolved, and every problem
raised on the spec line it is about (`nbvene.errors.error_at`). A patching spec becomes a `Plan`
(`resolve`), a steering spec a `Steering` (`resolve_steering`), and a training spec's
`via rotated(...)` calls their modules (`resolve_calls`). The binder never runs the model: what
needs a forward pass (a steering vector from prompts) is given to it by the caller.
"""

from nbvene.bind.binder import Binder
from nbvene.bind.patching import resolve
from nbvene.bind.plan import Axis, CorruptPlan, MetricPlan, Op, Plan, Row, Unit, ValueKind
from nbvene.bind.steering import Region, Steering, Term, Where, resolve_steering, steered_site
from nbvene.bind.training import named_calls, resolve_calls, via_modules

__all__ = [
    "Axis",
    "Binder",
    "CorruptPlan",
    "MetricPlan",
    "Op",
    "Plan",
    "Region",
    "Row",
    "Steering",
    "Term",
    "Unit",
    "ValueKind",
    "Where",
    "named_calls",
    "resolve",
    "resolve_calls",
    "resolve_steering",
    "steered_site",
    "via_modules",
]
