"""Static figures of a Result: the shared palette, SVG heatmaps, token views and bar charts in
pure Python, a self-contained HTML page, and Altair charts and PNGs for export.

>>> from nbvene import figures
>>> figures.svg(res)            # an SVG document (str); res.to_svg() is the same
>>> figures.to_altair(res)      # needs altair; figures.png(res) also needs vl-convert-python
"""

from nbvene.figures.page import page, svg_image
from nbvene.figures.palette import (
    MISSING,
    PALETTE,
    PALETTE_DARK,
    Centre,
    Scale,
    centre,
    colour,
    scale,
    ticks,
)
from nbvene.figures.svg import svg
from nbvene.figures.vegalite import png, to_altair
from nbvene.figures.view import visible

__all__ = [
    "MISSING",
    "PALETTE",
    "PALETTE_DARK",
    "Centre",
    "Scale",
    "centre",
    "colour",
    "page",
    "png",
    "scale",
    "svg",
    "svg_image",
    "ticks",
    "to_altair",
    "visible",
]
