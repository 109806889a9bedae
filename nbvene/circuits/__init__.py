"""Circuit discovery: score every edge sender → receiver between a model's components (the
embedding, each attention head, each MLP, the logits), keep the edges that matter, and check
by ablation that they suffice (faithfulness)."""

from nbvene.circuits.graph import Edge, Node
from nbvene.circuits.result import Circuit

__all__ = ["Circuit", "Edge", "Node"]
