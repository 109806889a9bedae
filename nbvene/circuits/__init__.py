"""Circuit discovery: score every edge sender → receiver between a model's components (the
embedding, each attention head, each MLP, the logits), keep the edges that matter, and check
by ablation that they suffice (faithfulness)."""

from nbvene.circuits.ablate import curve, edge_metric, faithfulness
from nbvene.circuits.acdc import acdc
from nbvene.circuits.eap import edge_scores
from nbvene.circuits.edges import graph_of
from nbvene.circuits.forward import Inputs, inputs
from nbvene.circuits.graph import Edge, Node
from nbvene.circuits.result import Circuit

__all__ = [
    "Circuit",
    "Edge",
    "Inputs",
    "Node",
    "acdc",
    "curve",
    "edge_metric",
    "edge_scores",
    "faithfulness",
    "graph_of",
    "inputs",
]
