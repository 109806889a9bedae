"""Plans: a spec bound to one model (sites, positions, grid rows), checked before anything runs."""

from nbvene.plan.plan import Axis, CorruptPlan, MetricPlan, Op, Plan, Row, Unit
from nbvene.plan.resolve import resolve

__all__ = ["Axis", "CorruptPlan", "MetricPlan", "Op", "Plan", "Row", "Unit", "resolve"]
