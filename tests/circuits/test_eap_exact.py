"""Edge scores and the edge-patched forward against a hand-written hook implementation, on a
tiny GPT-2 (fused c_attn, Conv1D, LayerNorm) and a tiny Llama (grouped-query attention,
RMSNorm): the ablation metric of one removed edge equals the hand-written patch, EAP equals a
finite difference along the edge, and EAP-IG ranks the edges as exact patching does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr

import nbvene as nv
from nbvene.circuits import Edge, Node, edge_metric, edge_scores, graph_of, inputs
from nbvene.circuits.ablate import curve

PAIRS = [
    (
        "When John and Mary went to the store, John gave",
        "When John and Mary went to the store, Mary gave",
    ),
    ("The cat sat on the mat and then the", "The cat sat on the rug and then the"),
]

# --- the hand-written implementation: one edge patched, nothing of nbvene.circuits used -------


class Names:
    """Where a family keeps the modules the hand-written patch hooks."""

    def __init__(self, model):
        self.gpt2 = model.config.model_type == "gpt2"
        self.blocks = model.transformer.h if self.gpt2 else model.model.layers
        self.final = model.transformer.ln_f if self.gpt2 else model.model.norm
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.d = config.hidden_size
        self.dh = self.d // self.heads

    def attention_norm(self, layer):
        block = self.blocks[layer]
        return block.ln_1 if self.gpt2 else block.input_layernorm

    def mlp_norm(self, layer):
        block = self.blocks[layer]
        return block.ln_2 if self.gpt2 else block.post_attention_layernorm

    def out_projection(self, layer):
        block = self.blocks[layer]
        return block.attn.c_proj if self.gpt2 else block.self_attn.o_proj

    def norm(self, module, x):
        if self.gpt2:
            return F.layer_norm(x, (self.d,), module.weight, module.bias, module.eps)
        variance = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(variance + module.variance_epsilon) * module.weight

    def head_output(self, layer, head, z):
        """Head `head`'s share of the attention output, from the output projection's input."""
        sl = slice(head * self.dh, (head + 1) * self.dh)
        proj = self.out_projection(layer)
        if self.gpt2:
            return z[..., sl] @ proj.weight[sl, :]
        return z[..., sl] @ proj.weight[:, sl].T


def run(model, x, hooks, metric):
    handles = []
    try:
        for module, kind, fn in hooks:
            if kind == "pre":
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(fn))
        logits = model(input_ids=x.ids, attention_mask=x.mask).logits
    finally:
        for handle in handles:
            handle.remove()
    return metric(logits[torch.arange(x.ids.shape[0]), x.read]).mean().item()


def hand_output(model, x, sender: Node) -> torch.Tensor:
    """A sender's output [B, T, d] on `x`, by a hook of its own."""
    names, out = Names(model), {}
    if sender.kind == "embed":

        def grab(module, args, kwargs):
            out["x"] = args[0]

        hooks = [(names.blocks[0], "pre", grab)]
    elif sender.kind == "head":

        def grab(module, args, kwargs):
            out["x"] = names.head_output(sender.layer, sender.head, args[0])

        hooks = [(names.out_projection(sender.layer), "pre", grab)]
    else:

        def grab(module, args, output):
            out["x"] = output

        hooks = [(names.blocks[sender.layer].mlp, "post", grab)]
    with torch.no_grad():
        run(model, x, hooks, lambda logits: logits[:, 0])
    return out["x"]


def hand_patched(model, clean, delta: torch.Tensor, edge: Edge, metric) -> float:
    """The metric when receiver `edge.receiver` reads the residual stream plus `delta` on port
    `edge.port` (everything else as in the clean run)."""
    names, r = Names(model), edge.receiver
    if r.kind == "logits":

        def shift(module, args, kwargs):
            return (args[0] + delta,), kwargs

        hooks = [(names.final, "pre", shift)]
    elif r.kind == "mlp":
        norm = names.mlp_norm(r.layer)

        def renorm(module, args, output):
            return names.norm(module, args[0] + delta)

        hooks = [(norm, "post", renorm)]
    else:
        norm, kept = names.attention_norm(r.layer), {}

        def keep(module, args, kwargs):
            kept["resid"] = args[0]

        x_norm = lambda: names.norm(norm, kept["resid"] + delta)  # noqa: E731
        attn = names.blocks[r.layer].attn if names.gpt2 else names.blocks[r.layer].self_attn
        if names.gpt2:
            offset = {"q": 0, "k": names.d, "v": 2 * names.d}[edge.port]
            sl = slice(offset + r.head * names.dh, offset + (r.head + 1) * names.dh)
            projection = attn.c_attn

            def project(y):
                return y @ projection.weight[:, sl] + projection.bias[sl]
        else:
            group = names.heads // names.kv_heads
            unit = r.head if edge.port == "q" else r.head // group
            sl = slice(unit * names.dh, (unit + 1) * names.dh)
            projection = getattr(attn, f"{edge.port}_proj")

            def project(y):
                return y @ projection.weight[sl, :].T

        def replace(module, args, output):
            output = output.clone()
            output[..., sl] = project(x_norm())
            return output

        hooks = [(norm, "pre", keep), (projection, "post", replace)]
    with torch.no_grad():
        return run(model, clean, hooks, metric)


def hand_mean(model, x, sender):
    """The ablation="mean" reference: the sender's mean over the batch at each position."""
    out = hand_output(model, x, sender)
    w = x.mask[:, :, None].to(out.dtype)
    return ((out * w).sum(0, keepdim=True) / w.sum(0, keepdim=True).clamp(min=1)).expand_as(out)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def setup(request):
    model, tok = nv.models.tiny(request.param, layers=2)
    clean = inputs(tok, [c for c, _ in PAIRS])
    corrupted = inputs(tok, [k for _, k in PAIRS])
    a, b = tok(" a")["input_ids"][0], tok(" the")["input_ids"][0]

    def metric(logits):
        return logits[:, a] - logits[:, b]

    edges = graph_of(model)
    exact = torch.tensor(
        [
            edge_metric(model, clean, corrupted, metric, [e for e in edges if e != edge])
            for edge in edges
        ]
    )
    full = edge_metric(model, clean, corrupted, metric, edges)
    return model, clean, corrupted, metric, edges, exact - full


def sample(model) -> list[Edge]:
    """Edges into every kind of receiver port, from every kind of sender."""
    embed, h = Node(-1, "embed"), lambda layer, i: Node(layer, "head", i)
    # The prompts of a pair differ before their last token, so the embedding sends nothing
    # new to the last position: its edges are into keys, values and MLPs of earlier positions
    return [
        Edge(embed, h(1, 2), "k"),
        Edge(h(0, 0), h(1, 2), "q"),
        Edge(h(0, 1), h(1, 0), "k"),
        Edge(h(0, 3), h(1, 2), "v"),
        Edge(Node(0, "mlp"), h(1, 1), "q"),
        Edge(h(0, 2), Node(0, "mlp"), "in"),
        Edge(embed, Node(0, "mlp"), "in"),
        Edge(h(1, 3), Node(2, "logits"), "in"),
        Edge(Node(1, "mlp"), Node(2, "logits"), "in"),
    ]


# --- tests ----------------------------------------------------------------------------------


def test_one_removed_edge_equals_the_hand_written_patch(setup):
    model, clean, corrupted, metric, edges, _ = setup
    full = hand_patched(model, clean, 0.0, Edge(Node(-1, "embed"), Node(2, "logits")), metric)
    assert edge_metric(model, clean, corrupted, metric, edges) == pytest.approx(full, abs=1e-5)
    for edge in sample(model):
        assert edge in edges
        delta = hand_output(model, corrupted, edge.sender) - hand_output(model, clean, edge.sender)
        expected = hand_patched(model, clean, delta, edge, metric)
        kept = [e for e in edges if e != edge]
        got = edge_metric(model, clean, corrupted, metric, kept)
        assert got == pytest.approx(expected, abs=1e-5), edge.name
        assert abs(expected - full) > 1e-7, f"{edge.name} changes nothing: a weak check"


def test_mean_ablation_equals_the_hand_written_patch(setup):
    model, clean, corrupted, metric, edges, _ = setup
    for edge in sample(model)[::3]:
        delta = hand_mean(model, clean, edge.sender) - hand_output(model, clean, edge.sender)
        expected = hand_patched(model, clean, delta, edge, metric)
        kept = [e for e in edges if e != edge]
        got = edge_metric(model, clean, corrupted, metric, kept, ablation="mean")
        assert got == pytest.approx(expected, abs=1e-5), edge.name


def test_no_edge_kept_is_the_corrupted_run(setup):
    model, clean, corrupted, metric, *_ = setup
    corrupt = run(model, corrupted, [], metric)
    assert edge_metric(model, clean, corrupted, metric, []) == pytest.approx(corrupt, abs=1e-5)


def test_eap_ig_ranks_edges_as_exact_patching_does(setup):
    model, clean, corrupted, metric, edges, exact = setup
    scores = edge_scores(model, clean, corrupted, metric, method="eap-ig", steps=5)
    assert scores.dtype == torch.float32 and scores.shape == (len(edges),)
    # Ranks among edges whose exact effect is below 1% of the largest are rounding noise:
    # the rank correlation is over the edges that change the metric
    moving = exact.abs() >= 0.01 * exact.abs().max()
    assert moving.sum() >= 20
    assert spearmanr(scores[moving], exact[moving])[0] >= 0.95
    assert pearsonr(scores, exact)[0] >= 0.99
    plain = edge_scores(model, clean, corrupted, metric)
    assert pearsonr(plain, exact)[0] >= 0.8


def test_eap_is_the_gradient_along_each_edge(setup):
    """EAP = (out_s^corrupt − out_s^clean) · ∂m/∂input_r: a central difference along the
    edge, with the hand-written patch, in float64 (Llama's eager attention takes its softmax in
    float32, so the step is not tiny)."""
    model, clean, corrupted, metric, edges, _ = setup
    model = model.double()
    try:
        scores = edge_scores(model, clean, corrupted, metric)
        step = 1e-2
        for edge in sample(model):
            delta = hand_output(model, corrupted, edge.sender) - hand_output(
                model, clean, edge.sender
            )
            ahead = hand_patched(model, clean, step * delta, edge, metric)
            behind = hand_patched(model, clean, -step * delta, edge, metric)
            finite = (ahead - behind) / (2 * step)
            got = scores[edges.index(edge)].item()
            assert got == pytest.approx(finite, rel=1e-2, abs=1e-5), edge.name
    finally:
        model.float()


def test_curve_batches_sizes_as_single_runs(setup):
    model, clean, corrupted, metric, edges, exact = setup
    ranked = [edges[i] for i in exact.abs().argsort(descending=True)]
    sizes = [0, 3, 10, len(edges)]
    points = curve(model, clean, corrupted, metric, ranked, sizes)
    full = edge_metric(model, clean, corrupted, metric, edges)
    none = edge_metric(model, clean, corrupted, metric, [])
    assert [size for size, _ in points] == sizes
    assert points[0][1] == pytest.approx(0.0, abs=1e-5)
    assert points[-1][1] == pytest.approx(1.0, abs=1e-5)
    single = edge_metric(model, clean, corrupted, metric, ranked[:10])
    assert points[2][1] == pytest.approx((single - none) / (full - none), abs=1e-4)
