"""nbvene's widgets (anywidget): a heatmap that fills in live and answers clicks, a token view,
and the steering panel. Each has its `.js` and `.css` beside it, shipped in the package."""

from nbvene.widgets.display import can_display, mimebundle, view
from nbvene.widgets.heatmap import Heatmap
from nbvene.widgets.panel import SteeringPanel
from nbvene.widgets.tokens import TokenView

__all__ = ["Heatmap", "SteeringPanel", "TokenView", "can_display", "mimebundle", "view"]
