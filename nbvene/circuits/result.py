"""`Circuit`: what circuit discovery returns — every scored edge, the edges kept, and how
faithful the kept circuit is (the metric with everything else ablated, over the full model's)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nbvene.circuits.graph import Edge


@dataclass
class Circuit:
    """The scored edges of a model for one behaviour and the circuit kept from them.

    * `edges`: every edge scored, in topological order (senders before receivers);
      `scores[i]` is the score of `edges[i]` (the metric's estimated change when that edge
      alone is patched from the corrupted run; larger magnitude matters more).
    * `kept`: the circuit, a subset of `edges`.
    * `faithfulness`: metric(circuit) / metric(full model), each measured from the corrupted
      run's metric (so 1 means the circuit alone recovers the whole behaviour and 0 none of it).
    * `curve`: (number of edges kept, faithfulness) for a range of sizes, measured during
      discovery by ablation, so a slider over sizes answers without running the model.
    * `method`: "eap", "eap-ig" or "acdc"; `metric`: the metric's text; `spec`: the spec text
      that re-runs the discovery (empty when made by hand); `meta`: model name, layers, heads,
      prompts and anything else a figure or report needs.
    """

    edges: list[Edge]
    scores: torch.Tensor
    kept: list[Edge]
    faithfulness: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    method: str = "eap"
    metric: str = ""
    spec: str = ""
    meta: dict = field(default_factory=dict)
