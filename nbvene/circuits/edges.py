"""Every edge of a model's graph, in topological order, and where each node sits in the model.

Senders write to the residual stream: the embedding, each attention head (per query head), each
MLP. Receivers read it: each later head's query, key and value input, each later MLP's input,
the logits (the final norm's input). A head's own query, key and value inputs are separate
receivers, so an edge can feed a head's keys without feeding its queries.

Grouped-query attention (`num_key_value_heads` < `num_attention_heads`): keys and values are
computed once per key/value head and shared by its group of query heads, so the `k` and `v`
receivers are per key/value head, named by the first query head of the group: with 4 query
heads and 2 key/value heads, `a1.h2.k` is the key input of key/value head 1, which query heads
2 and 3 read. Without grouping every head has its own `k` and `v` receiver.

Parallel-residual blocks (GPT-NeoX with `use_parallel_residual`) feed attention and MLP the
same input, so a layer's heads send nothing to that layer's MLP; sequential blocks (GPT-2,
Llama, ...) have those edges.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nbvene.circuits.graph import Edge, Node
from nbvene.errors import NbveneError
from nbvene.sites.families import Family, Part, Shape, family_of, final_norm
from nbvene.sites.view import View

POST_NORM_TYPES = frozenset({"gemma2", "gemma3_text", "olmo2"})
"""Families that normalise the attention output before adding it: a head's share of the
residual stream is then not its own output, so edges from heads are not defined."""


@dataclass(frozen=True)
class Port:
    """Where one kind of head input is computed: the projection module, and the view of its
    output that holds the heads (as many as `view.heads`)."""

    name: str
    projection: str
    view: View


@dataclass(frozen=True)
class Layout:
    """A model's graph and the modules the edge-patched forward hooks.

    `senders` and `receivers` are in topological order; `receivers` holds (node, port) pairs
    (per layer: each query head's `q`, each key/value head's `k`, then `v`, then the MLP's `in`;
    last the logits). `edges` are ordered by receiver, then sender."""

    family: Family
    layers: int
    heads: int
    kv_heads: int
    parallel: bool
    blocks: str
    attention_norm: str
    mlp_norm: str
    mlp: str
    output_projection: str
    final_norm: str
    ports: tuple[Port, ...]
    senders: tuple[Node, ...]
    receivers: tuple[tuple[Node, str], ...]
    edges: tuple[Edge, ...]

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.kv_heads

    def receiver_heads(self, port: str) -> int:
        """How many receivers one layer has on a head port."""
        return self.heads if port == "q" else self.kv_heads

    def available(self, layer: int, port: str) -> int:
        """How many senders (a prefix of `senders`) a receiver of `layer` on `port` reads:
        the embedding, the heads and MLPs of earlier layers, and for a sequential block's MLP
        its own layer's heads."""
        per_layer = self.heads + 1
        count = 1 + per_layer * layer
        if port == "in" and layer < self.layers and not self.parallel:
            count += self.heads
        return count


def layout_of(model: nn.Module) -> Layout:
    """The graph of `model` and where its nodes sit; NbveneError for a model whose family has
    no edges (encoders, post-norm blocks, no final norm before the LM head)."""
    family = family_of(model)
    config = getattr(model, "config", None)
    name = family.name if family else type(model).__name__
    if family is None or config is None:
        raise NbveneError(
            f"circuit discovery does not know where the components of {name} are",
            hint="it supports decoder families with a final norm: llama, qwen2, mistral, phi3, "
            "gpt2, gpt_neox",
        )
    model_type = getattr(config, "model_type", "")
    norms = family.transformerlens(config)
    attn_in, mlp_in = norms.get("attn_in"), norms.get("mlp_in")
    norm = final_norm(family)
    if (
        norm is None
        or model_type in POST_NORM_TYPES
        or not isinstance(attn_in, Part)
        or not isinstance(mlp_in, Part)
    ):
        raise NbveneError(
            f"circuit discovery does not support the {name!r} family ({model_type})",
            hint="edges need pre-norm blocks that add each head's output to the residual "
            "stream and a final norm before the LM head: llama, qwen2, mistral, phi3, gpt2, "
            "gpt_neox",
        )
    shape = Shape.of(config)
    parts = family.parts(config, shape)
    layers = len(model.get_submodule(family.blocks))
    parallel = family.name == "gpt_neox" and getattr(config, "use_parallel_residual", True)
    ports = tuple(
        Port(port, parts[f"head_{kind}_output"].path, parts[f"head_{kind}_output"].view)
        for port, kind in (("q", "query"), ("k", "key"), ("v", "value"))
    )
    senders, receivers = _nodes(layers, shape.heads, shape.kv_heads)
    layout = Layout(
        family=family,
        layers=layers,
        heads=shape.heads,
        kv_heads=shape.kv_heads,
        parallel=parallel,
        blocks=family.blocks,
        attention_norm=attn_in.path,
        mlp_norm=mlp_in.path,
        mlp=parts["mlp_output"].path,
        output_projection=parts["head_attention_value_output"].path,
        final_norm=norm,
        ports=ports,
        senders=senders,
        receivers=receivers,
        edges=(),
    )
    edges = tuple(
        Edge(sender, node, port)
        for node, port in receivers
        for sender in senders[: layout.available(node.layer, port)]
    )
    return Layout(**{**layout.__dict__, "edges": edges})


def _nodes(layers: int, heads: int, kv_heads: int):
    group = heads // kv_heads
    senders = [Node(-1, "embed")]
    receivers = []
    for layer in range(layers):
        senders += [Node(layer, "head", h) for h in range(heads)] + [Node(layer, "mlp")]
        receivers += [(Node(layer, "head", h), "q") for h in range(heads)]
        for port in ("k", "v"):
            receivers += [(Node(layer, "head", g * group), port) for g in range(kv_heads)]
        receivers.append((Node(layer, "mlp"), "in"))
    receivers.append((Node(layers, "logits"), "in"))
    return tuple(senders), tuple(receivers)


def graph_of(model: nn.Module) -> list[Edge]:
    """Every edge of `model` in topological order (by receiver, then sender; senders always
    before their receivers): the list edge scores are aligned with.

    >>> model, tok = nv.models.tiny("gpt2", layers=2)
    >>> edges = graph_of(model)
    >>> edges[0].name, edges[-1].name
    ('embed -> a0.h0.q', 'm1 -> logits')
    """
    return list(layout_of(model).edges)
