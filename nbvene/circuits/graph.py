"""The computational graph circuits are made of: nodes are the components that write to the
residual stream (the embedding, each attention head, each MLP) and those that read it (each
head's query, key and value input, each MLP's input, the logits); an edge joins a writer to a
later reader, because in a residual network every reader's input is the sum of the writers
before it."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("embed", "head", "mlp", "logits")
PORTS = ("q", "k", "v", "in")
"""Where an edge enters its receiver: a head's query, key or value input, or the whole input of
an MLP or of the logits (the final norm)."""


@dataclass(frozen=True, order=True)
class Node:
    """A component: `kind` is one of KINDS; `layer` is its block (-1 for the embedding, the
    number of blocks for the logits); `head` is the attention head, for heads only."""

    layer: int
    kind: str
    head: int | None = None

    @property
    def name(self) -> str:
        """The short name figures and frames show: `embed`, `a3.h2`, `m3`, `logits`."""
        if self.kind == "head":
            return f"a{self.layer}.h{self.head}"
        if self.kind == "mlp":
            return f"m{self.layer}"
        return self.kind

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, order=True)
class Edge:
    """`sender` writes to the residual stream and `receiver` reads it through `port`
    (one of PORTS: `q`, `k`, `v` for a head, `in` for an MLP or the logits)."""

    sender: Node
    receiver: Node
    port: str = "in"

    @property
    def name(self) -> str:
        """`a0.h1 -> a2.h3.q`, `m1 -> logits`."""
        into = self.receiver.name if self.port == "in" else f"{self.receiver.name}.{self.port}"
        return f"{self.sender.name} -> {into}"

    def __str__(self) -> str:
        return self.name
