"""Where each component of a circuit graph sits, shared by the widget and the static SVG so both
draw the same picture: the embedding on the left, the logits on the right, and between them one
column per block for its attention heads (stacked, head 0 on top) and one for its MLP (an MLP
reads what its block's heads wrote, so it sits to their right).

Labels are set in a monospace font, so a label's width is known without a browser
(`label_box`); columns are spaced wider than their widest label and rows taller than a line,
so no two labels ever overlap."""

from __future__ import annotations

from dataclasses import dataclass

from nbvene.circuits.graph import Node

FONT = 11.0
"""Label font size in px (monospace)."""
CHAR = 0.62 * FONT
"""Width of one monospace character: DejaVu Sans Mono and Liberation Mono are 0.60 em wide,
rounded up so the estimate is never short."""
ROW = 24.0
"""Vertical distance between stacked heads: a node box (FONT + 8) plus a gap."""
GAP = 22.0
"""Horizontal gap between a column's widest node box and the next column's."""
PAD = 4.0
"""Space between a label and its node box's edge."""


@dataclass(frozen=True)
class Placed:
    """A node's box: centre (`x`, `y`) and size, in px from the graph's top left."""

    node: Node
    x: float
    y: float
    width: float
    height: float


def column(node: Node) -> int:
    """The column of a node: 0 the embedding, 2l+1 the heads of block l, 2l+2 its MLP, and the
    last (2 × blocks + 1) the logits, whose `layer` is the number of blocks."""
    if node.kind == "embed":
        return 0
    if node.kind == "head":
        return 2 * node.layer + 1
    if node.kind == "mlp":
        return 2 * node.layer + 2
    return 2 * node.layer + 1


def label_box(text: str) -> tuple[float, float]:
    """The (width, height) of a node's box around its label."""
    return len(text) * CHAR + 2 * PAD, FONT + 8


def layout(nodes) -> tuple[dict[Node, Placed], float, float]:
    """Boxes for `nodes` and the graph's (width, height). Columns follow `column`; a column
    holds its nodes top to bottom in order (heads by number), centred vertically."""
    columns: dict[int, list[Node]] = {}
    for node in sorted(set(nodes)):
        columns.setdefault(column(node), []).append(node)
    tallest = max((len(c) for c in columns.values()), default=1)
    height = tallest * ROW
    placed: dict[Node, Placed] = {}
    x = GAP / 2
    for key in sorted(columns):
        members = columns[key]
        width = max(label_box(n.name)[0] for n in members)
        top = (height - len(members) * ROW) / 2
        for i, node in enumerate(members):
            w, h = label_box(node.name)
            placed[node] = Placed(node, x + width / 2, top + (i + 0.5) * ROW, w, h)
        x += width + GAP
    return placed, x - GAP / 2, height
