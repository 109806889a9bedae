"""Static figures of a Result: the shared palette, SVG heatmaps and token views (pure Python),
and Altair charts for export."""

from nbvene.figures.palette import MISSING, PALETTE, Centre, Scale, centre, colour, scale

__all__ = ["MISSING", "PALETTE", "Centre", "Scale", "centre", "colour", "scale"]
