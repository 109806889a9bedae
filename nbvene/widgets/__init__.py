"""nbvene's widgets (anywidget): a heatmap that fills in live and answers clicks, a token view,
and the steering panel. Each has its `.js` and `.css` beside it, shipped in the package."""

from nbvene.widgets.panel import SteeringPanel

__all__ = ["SteeringPanel"]
