"""A Circuit as a standalone SVG, in pure Python: the kept edges between the components they
join, laid out as the widget lays them out (`nbvene.circuits.layout`), coloured and weighted
by score on the shared diverging palette, with a title (method, metric, edges kept,
faithfulness) and a colour bar. It is what a saved notebook shows on GitHub and nbviewer, so it
draws only the circuit's strongest edges and the components they touch, to stay small."""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING

from nbvene.circuits.layout import CHAR, FONT, layout
from nbvene.figures.palette import PALETTE, Scale, colour

if TYPE_CHECKING:
    from nbvene.circuits.result import Circuit

MAX_EDGES = 300
"""At most this many kept edges are drawn (the strongest); the title says when more are kept."""
MONO = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
MARGIN = 12.0
TITLE = 30.0
"""Height of the title band above the graph."""
LEGEND = 40.0
"""Height of the colour bar band below the graph."""
CAPTION = "edge score (white = 0)"
PORT_OFFSET = {"q": -0.3, "k": 0.0, "v": 0.3, "in": 0.0}
"""Where an edge enters its receiver's box, as a fraction of the box's height: a head's query,
key and value inputs top to bottom, so three edges from one sender stay apart."""


def edge_scale(circuit: Circuit) -> Scale:
    """The colour scale of every circuit figure: diverging at 0 (an edge that changes nothing
    is white), symmetric out to the largest |score| of any edge."""
    finite = [abs(v) for v in circuit.scores.detach().float().tolist() if math.isfinite(v)]
    half = max(finite, default=0.0) or 1.0
    return Scale(-half, 0.0, half)


def width_of(score: float, scale: Scale) -> float:
    """An edge's stroke width in px: 0.75 for a score of 0 up to 4 at the largest |score|."""
    return 0.75 + 3.25 * min(1.0, abs(score) / scale.hi) if math.isfinite(score) else 0.75


def title(circuit: Circuit, drawn: int) -> str:
    """What the figure's title says: method, metric, edges kept of all, faithfulness."""
    faith = circuit.faithfulness
    said = f"faithfulness {faith:.3g}" if math.isfinite(faith) else "faithfulness not measured"
    text = f"{circuit.method} circuit"
    if circuit.metric:
        text += f" · {circuit.metric}"
    text += f" · {len(circuit.kept):,} of {len(circuit.edges):,} edges · {said}"
    if drawn < len(circuit.kept):
        text += f" (strongest {drawn} drawn)"
    return text


def svg(circuit: Circuit) -> str:
    """The circuit as an SVG document (a string).

    >>> open("circuit.svg", "w").write(circ.to_svg())
    """
    scores = circuit.scores.detach().float().tolist()
    index = {e: i for i, e in enumerate(circuit.edges)}
    kept = set(circuit.kept)
    strongest = [i for i in circuit.order() if circuit.edges[i] in kept][:MAX_EDGES]
    drawn = sorted(strongest, key=lambda i: abs(scores[i]) if math.isfinite(scores[i]) else 0.0)
    nodes = {n for i in drawn for n in (circuit.edges[i].sender, circuit.edges[i].receiver)}
    placed, graph_w, graph_h = layout(nodes)
    heading = title(circuit, len(drawn))
    width = max(
        graph_w + 2 * MARGIN,
        len(heading) * CHAR + 2 * MARGIN,
        MARGIN + 215 + len(CAPTION) * 0.62 * 10 + MARGIN,  # the colour bar and its caption
    )
    height = TITLE + graph_h + LEGEND + MARGIN
    scale = edge_scale(circuit)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{MONO}" font-size="{FONT}" '
        f'role="img" class="nbvene-circuit">',
        f"<title>{escape(heading)}</title>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        f'<text x="{MARGIN}" y="19" font-size="{FONT}" font-weight="bold" fill="#222222" '
        f'class="nv-title">{escape(heading)}</text>',
        f'<g transform="translate({MARGIN},{TITLE})">',
    ]
    for i in drawn:
        edge, score = circuit.edges[i], scores[i]
        a, b = placed[edge.sender], placed[edge.receiver]
        x1, y1 = a.x + a.width / 2, a.y
        x2, y2 = b.x - b.width / 2, b.y + PORT_OFFSET[edge.port] * b.height
        mid = (x1 + x2) / 2
        parts.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
            f'{x2:.1f},{y2:.1f}" fill="none" stroke="{colour(score, scale)}" '
            f'stroke-width="{width_of(score, scale):.2f}" data-edge="{index[edge]}">'
            f"<title>{escape(edge.name)}: {score:+.4g}</title></path>"
        )
    for p in sorted(placed.values(), key=lambda p: p.node):
        parts.append(
            f'<rect x="{p.x - p.width / 2:.1f}" y="{p.y - p.height / 2:.1f}" '
            f'width="{p.width:.1f}" height="{p.height:.1f}" rx="3" fill="#f4f4f4" '
            f'stroke="#666666"/>'
            f'<text x="{p.x:.1f}" y="{p.y + FONT * 0.35:.1f}" text-anchor="middle" '
            f'fill="#222222" class="nv-node">{escape(p.node.name)}</text>'
        )
    parts.append("</g>")
    parts.append(_colour_bar(scale, MARGIN, TITLE + graph_h + 10))
    parts.append("</svg>")
    return "".join(parts)


def _colour_bar(scale: Scale, x: float, y: float) -> str:
    """A 200 px ramp of the palette from -max|score| to +max|score|, five ticks, a caption."""
    stops = "".join(
        f'<stop offset="{k / (len(PALETTE) - 1):.3f}" stop-color="#{r:02x}{g:02x}{b:02x}"/>'
        for k, (r, g, b) in enumerate(PALETTE)
    )
    ticks = []
    for k in range(5):
        value = scale.lo + k * (scale.hi - scale.lo) / 4
        tx = x + 50 * k
        ticks.append(
            f'<text x="{tx:.1f}" y="{y + 22:.1f}" text-anchor="middle" font-size="9" '
            f'fill="#444444">{value:+.2g}</text>'
        )
    return (
        f'<defs><linearGradient id="nv-circuit-ramp">{stops}</linearGradient></defs>'
        f'<rect x="{x}" y="{y:.1f}" width="200" height="8" fill="url(#nv-circuit-ramp)" '
        f'stroke="#cccccc"/>{"".join(ticks)}'
        f'<text x="{x + 215:.1f}" y="{y + 8:.1f}" font-size="10" fill="#444444">'
        f"{CAPTION}</text>"
    )
