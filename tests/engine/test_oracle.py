"""`nv.run` against hand-written forward passes of tiny GPT-2, Llama (GQA) and GPT-NeoX.

Each oracle computes its model top to bottom from the weights, nanoGPT style, with no hooks.
Wherever nbvene has a component it calls `at(component, layer, x)`, which records `x` and
lets a test replace it. The expected value of every grid cell is one oracle run with one
hand-made edit; the engine's numbers must match it to 1e-5.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import nbvene as nv

FAMILIES = ("gpt2", "llama", "gpt_neox")
LAYERS = 2
TOL = 1e-5

BASE = "The Colosseum is located in the city of"  # 11 tokens
SOURCE = "John thinks that Mary is happy and kind to"  # 11 tokens, other words
LONG_SOURCE = "When John and Mary went to the store, John gave a bottle to"  # 14 tokens
SHORT = "The Louvre is in the city of"  # 8 tokens
PROMPT_NAMES = {BASE: "base11", SOURCE: "source11", LONG_SOURCE: "long14", SHORT: "short8"}
METRIC = 'logit_diff(" Paris", " Rome")'

WHOLE = (
    "block_input",
    "block_output",
    "resid_mid",
    "attention_input",
    "attention_output",
    "attention_value_output",
    "query_output",
    "key_output",
    "value_output",
    "mlp_input",
    "mlp_output",
    "mlp_activation",
)
BY_HEAD = (
    "head_attention_value_output",
    "head_query_output",
    "head_key_output",
    "head_value_output",
    "attention_weight",  # a row of probabilities over the keys, per query position and head
)
COMPONENTS = {
    "gpt2": WHOLE + BY_HEAD,
    "llama": WHOLE + BY_HEAD,
    # parallel residual: attention and MLP both read the block input, so there is no resid_mid
    "gpt_neox": tuple(c for c in WHOLE if c != "resid_mid") + BY_HEAD,
}
Z = "head_attention_value_output"


# --- the oracles ------------------------------------------------------------------------------


class At:
    """The oracle's one edit point: records every activation, replaces those in `edits`.

    Whole-vector components are (seq, d); head components are (seq, heads, head_dim), and
    attention_weight is (query, heads, key).
    """

    def __init__(self, edits=None):
        self.edits = edits or {}
        self.seen: dict[tuple[str, int], torch.Tensor] = {}

    def __call__(self, component: str, layer: int, x: torch.Tensor) -> torch.Tensor:
        self.seen[component, layer] = x
        edit = self.edits.get((component, layer))
        return x if edit is None else edit(x)


def linear(x, module):  # nn.Linear: weight is (out, in)
    y = x @ module.weight.T
    return y if module.bias is None else y + module.bias


def conv1d(x, module):  # GPT-2's Conv1D: weight is (in, out)
    return x @ module.weight + module.bias


def layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def rms_norm(x, norm):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight


def gelu_tanh(x):  # GPT-2's "gelu_new"
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def rotary(x, theta: float, dims: int):
    """RoPE on the first `dims` of each head of x (seq, heads, head_dim), pairing dimension i
    with i + dims/2. Angles in float32 then cast, as transformers computes them."""
    inv_freq = 1.0 / theta ** (torch.arange(0, dims, 2, dtype=torch.float32) / dims)
    angle = torch.arange(x.shape[0], dtype=torch.float32)[:, None] * inv_freq  # (seq, dims/2)
    cos, sin = angle.cos().to(x.dtype)[:, None], angle.sin().to(x.dtype)[:, None]
    x1, x2, rest = x[..., : dims // 2], x[..., dims // 2 : dims], x[..., dims:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, rest], dim=-1)


def attend(at, layer, q, k, v):
    """Causal softmax attention; q, k, v are (seq, heads, head_dim); returns the same shape.
    The probabilities pass `at` as (query, heads, key)."""
    seq, _, head_dim = q.shape
    scores = torch.einsum("qhd,khd->qhk", q, k) / math.sqrt(head_dim)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()[:, None, :]  # (query, 1, key)
    weights = at("attention_weight", layer, scores.masked_fill(~causal, float("-inf")).softmax(-1))
    return torch.einsum("qhk,khd->qhd", weights, v)


def attention_core(at, layer, q, k, v, heads, kv_heads, rope=None):
    """From projection outputs (seq, ·) to the merged value output (seq, heads·head_dim)."""
    seq = q.shape[0]
    q = at("query_output", layer, q)
    k = at("key_output", layer, k)
    v = at("value_output", layer, v)
    q = at("head_query_output", layer, q.view(seq, heads, -1))
    k = at("head_key_output", layer, k.view(seq, kv_heads, -1))
    v = at("head_value_output", layer, v.view(seq, kv_heads, -1))
    if rope is not None:
        q, k = rope(q), rope(k)
    # grouped-query attention: query head h reads key/value head h // (heads / kv_heads)
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    z = attend(at, layer, q, k, v)
    z = at("attention_value_output", layer, z.reshape(seq, -1))
    return at("head_attention_value_output", layer, z.view(seq, heads, -1)).reshape(seq, -1)


def gpt2(model, ids, at):
    t, cfg = model.transformer, model.config
    x = t.wte.weight[ids] + t.wpe.weight[: len(ids)]
    for layer, block in enumerate(t.h):
        attn, mlp = block.attn, block.mlp
        x = at("block_input", layer, x)
        h = at("attention_input", layer, layer_norm(x, block.ln_1))
        q, k, v = conv1d(h, attn.c_attn).split(cfg.n_embd, dim=-1)
        z = attention_core(at, layer, q, k, v, cfg.n_head, cfg.n_head)
        a = at("attention_output", layer, conv1d(z, attn.c_proj))
        x = at("resid_mid", layer, x + a)
        h = at("mlp_input", layer, layer_norm(x, block.ln_2))
        act = at("mlp_activation", layer, gelu_tanh(conv1d(h, mlp.c_fc)))
        m = at("mlp_output", layer, conv1d(act, mlp.c_proj))
        x = at("block_output", layer, x + m)
    return layer_norm(x, t.ln_f) @ model.lm_head.weight.T


def llama(model, ids, at):
    cfg = model.config
    rope = functools.partial(rotary, theta=cfg.rope_parameters["rope_theta"], dims=cfg.head_dim)
    x = model.model.embed_tokens.weight[ids]
    for layer, block in enumerate(model.model.layers):
        attn, mlp = block.self_attn, block.mlp
        x = at("block_input", layer, x)
        h = at("attention_input", layer, rms_norm(x, block.input_layernorm))
        q, k, v = linear(h, attn.q_proj), linear(h, attn.k_proj), linear(h, attn.v_proj)
        heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        z = attention_core(at, layer, q, k, v, heads, kv_heads, rope)
        a = at("attention_output", layer, linear(z, attn.o_proj))
        x = at("resid_mid", layer, x + a)
        h = at("mlp_input", layer, rms_norm(x, block.post_attention_layernorm))
        gated = F.silu(linear(h, mlp.gate_proj)) * linear(h, mlp.up_proj)
        act = at("mlp_activation", layer, gated)
        m = at("mlp_output", layer, linear(act, mlp.down_proj))
        x = at("block_output", layer, x + m)
    return rms_norm(x, model.model.norm) @ model.lm_head.weight.T


def gpt_neox(model, ids, at):
    cfg, seq = model.config, len(ids)
    heads = cfg.num_attention_heads
    head_dim = cfg.hidden_size // heads
    theta, fraction = (cfg.rope_parameters[k] for k in ("rope_theta", "partial_rotary_factor"))
    rope = functools.partial(rotary, theta=theta, dims=int(head_dim * fraction))
    x = model.gpt_neox.embed_in.weight[ids]
    for layer, block in enumerate(model.gpt_neox.layers):
        attn, mlp = block.attention, block.mlp
        x = at("block_input", layer, x)
        h = at("attention_input", layer, layer_norm(x, block.input_layernorm))
        # fused per head: the last dimension is laid out (heads, q|k|v, head_dim)
        qkv = linear(h, attn.query_key_value).view(seq, heads, 3, head_dim)
        q, k, v = (part.reshape(seq, -1) for part in qkv.unbind(2))
        z = attention_core(at, layer, q, k, v, heads, heads, rope)
        a = at("attention_output", layer, linear(z, attn.dense))
        # parallel residual: the MLP reads the block input, not input + attention
        h = at("mlp_input", layer, layer_norm(x, block.post_attention_layernorm))
        act = at("mlp_activation", layer, gelu_erf(linear(h, mlp.dense_h_to_4h)))
        m = at("mlp_output", layer, linear(act, mlp.dense_4h_to_h))
        x = at("block_output", layer, x + a + m)
    return layer_norm(x, model.gpt_neox.final_layer_norm) @ model.lm_head.weight.T


ORACLES = {"gpt2": gpt2, "llama": llama, "gpt_neox": gpt_neox}


@torch.no_grad()
def oracle(model, ids, edits=None):
    """Logits (seq, vocab) of one unpadded prompt, and every activation by (component, layer)."""
    at = At(edits)
    logits = ORACLES[model.config.model_type](model, torch.as_tensor(ids), at)
    return logits, at.seen


# --- models, specs and the expected grids ---------------------------------------------------


@functools.cache
def tiny(family: str, dtype: torch.dtype = torch.float64):
    # initializer_range 0.1 rather than 0.02: with the default, attention is nearly uniform
    # and a query or key patch moves the metric by less than the tolerance.
    model, tok = nv.models.tiny(family, seed=0, layers=LAYERS, initializer_range=0.1)
    return model.to(dtype), tok


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny matrices: threads only add overhead (10x on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ids(family: str, text: str) -> list[int]:
    return tiny(family)[1](text)["input_ids"]


def logit_diff(family: str, logits: torch.Tensor) -> float:
    tok = tiny(family)[1]
    paris, rome = (tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " Rome"))
    return float(logits[-1, paris] - logits[-1, rome])


def spec(statement: str, base=BASE, source=SOURCE, metric: bool = True) -> str:
    quoted = f'"{base}"' if isinstance(base, str) else "[" + ", ".join(f'"{b}"' for b in base) + "]"
    lines = [f"base: {quoted}"]
    if source is not None:
        lines.append(f'source: "{source}"')
    lines.append(statement)
    if metric:
        lines.append(f"metric: {METRIC}")
    return "\n".join(lines)


def run(family: str, text: str, dtype=torch.float64, **kwargs):
    model, tok = tiny(family, dtype)
    res = nv.run(text, model=model, tokenizer=tok, max_batch=5, **kwargs)  # several chunks
    # the engine leaves the model as it found it
    assert not [m for m in model.modules() if m._forward_hooks or m._forward_pre_hooks]
    assert model.config._attn_implementation == "eager"
    return res


@dataclass(frozen=True)
class Case:
    """One statement, `verb: component layer=* pos=POS head=HEAD ...`, in a readable form."""

    verb: str
    component: str
    pos: str | None = "-1"
    head: str | None = None
    by: float | None = None  # add/subtract `by {vec} * by`; None: the source run's activation
    over: bool = False  # mean over {prompts} rather than over the base prompts
    layer: str = "*"

    def statement(self) -> str:
        words = [f"{self.verb}: {self.component} layer={self.layer}"]
        if self.pos is not None:
            words.append(f"pos={self.pos}")
        if self.head is not None:
            words.append(f"head={self.head}")
        if self.by is not None:
            words.append("by {vec}" + (f" * {self.by}" if self.by != 1 else ""))
        if self.over:
            words.append("over={prompts}")
        return " ".join(words)

    def __str__(self) -> str:
        return self.statement().replace(f"{self.verb}: {self.component} ", "")

    @property
    def axes(self) -> tuple[str, ...]:
        selectors = (("layer", self.layer), ("pos", self.pos), ("head", self.head))
        return tuple(a for a, s in selectors if s is not None and _swept(s))


def _swept(selector: str) -> bool:
    return selector == "*" or selector.startswith("[") or ".." in selector


def _values(selector: str | None, n: int) -> list:
    """What a selector stands for on an axis of n values: the test's own small reading of
    `*`, `[a, b]`, `a..b`, `last` and integers; None (no pos=) is every position at once."""
    if selector is None:
        return [slice(None)]
    if selector == "last":
        return [n - 1]
    if selector == "*":
        return list(range(n))
    if selector.startswith("["):
        return [int(v) % n for v in selector[1:-1].split(",")]
    if ".." in selector:
        start, stop = selector.split("..")
        return [v % n for v in range(int(start), int(stop) + 1)]
    return [int(selector) % n]


def positions(case: Case, base: list[int], source: list[int] | None) -> list[tuple]:
    """(base position, source position) pairs; aligned from the end unless `a->b`."""
    if case.pos is not None and "->" in case.pos:
        a, b = (int(v) for v in case.pos.split("->"))
        return [(a % len(base), b % len(source))]
    shift = len(source) - len(base) if source is not None else 0
    return [(p, p if isinstance(p, slice) else p + shift) for p in _values(case.pos, len(base))]


def vector(family: str, case: Case) -> torch.Tensor:
    """The `{vec}` of a case: float32, as a user would write it, one unit long."""
    width = oracle(tiny(family)[0], ids(family, BASE))[1][case.component, 0].shape[-1]
    return torch.randn(width, generator=torch.Generator().manual_seed(7))


def put(index, value):
    """An oracle edit: x with x[index] replaced by value."""

    def edit(x):
        x = x.clone()
        x[index] = value
        return x

    return edit


def expected(family: str, case: Case, base=BASE, source=SOURCE, mean_over=None):
    """The oracle's grid for a case, shaped as `nv.run` lays it out (then, for collect, the
    unit's own dimensions). Each metric cell is one oracle run with one edit."""
    model = tiny(family)[0]
    b = ids(family, base)
    s = ids(family, source) if source is not None else None
    ours = oracle(model, b)[1]
    theirs = oracle(model, s)[1] if s is not None else None
    over = [oracle(model, ids(family, text))[1] for text in mean_over or [base]]
    vec = vector(family, case).double() * case.by if case.by is not None else None
    heads = ours[case.component, 0].shape[1] if case.component in BY_HEAD else None
    layers = _values(case.layer, LAYERS)
    pos = positions(case, b, s)
    head_values = _values(case.head, heads) if case.head is not None else [None]

    cells = []
    for layer, (p, q), h in itertools.product(layers, pos, head_values):
        index, source_index = ((p,), (q,)) if h is None else ((p, h), (q, h))
        # one edit per run, so the edit point sees the clean base activation
        old = ours[case.component, layer][index]
        source_unit = None if theirs is None else theirs[case.component, layer][source_index]
        given = vec if vec is not None else source_unit  # what add and subtract take
        match case.verb:
            case "collect":
                cells.append(old)
                continue
            case "patch" | "restore":
                new = source_unit
            case "zero":
                new = torch.zeros_like(old)
            case "add":
                new = old + given
            case "subtract":
                new = old - given
            case "mean":  # over every real position of every prompt
                mean = torch.cat([acts[case.component, layer] for acts in over]).mean(0)
                new = mean if h is None else mean[h]
        logits, _ = oracle(model, b, {(case.component, layer): put(index, new)})
        cells.append(torch.tensor(logit_diff(family, logits), dtype=torch.float64))
    grid = torch.stack(cells).unflatten(0, (len(layers), len(pos), len(head_values)))
    swept = [s is not None and _swept(s) for s in (case.layer, case.pos, case.head)]
    return grid[tuple(slice(None) if k else 0 for k in swept)]


def check(res, want, axes, family, base=BASE, source=SOURCE):
    """`res` against the oracle's grid; its baselines against the unpatched oracle runs."""
    assert res.axes == axes
    torch.testing.assert_close(res.values.double(), want, atol=TOL, rtol=0)
    if res.metric is None:  # collect
        return
    model = tiny(family)[0]
    corrupted = logit_diff(family, oracle(model, ids(family, base))[0])
    assert float(res.corrupted) == pytest.approx(corrupted, abs=TOL)
    if source is None:
        assert res.clean is None
    else:
        clean = logit_diff(family, oracle(model, ids(family, source))[0])
        assert float(res.clean) == pytest.approx(clean, abs=TOL)
    # a test that cannot fail checks nothing: the edits must move the metric
    assert (want - corrupted).abs().max() > 1e-3


# --- the oracles are the models ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("family", FAMILIES)
def test_oracle_matches_the_model(family, dtype):
    model, _ = tiny(family, dtype)
    for text in (BASE, LONG_SOURCE):
        x = ids(family, text)
        with torch.no_grad():
            logits = model(torch.tensor([x])).logits[0]
        torch.testing.assert_close(oracle(model, x)[0], logits, atol=TOL, rtol=0)


def test_prompt_lengths_are_as_the_tests_assume():
    lengths = {name: len(ids("gpt2", text)) for text, name in PROMPT_NAMES.items()}
    assert lengths == {"base11": 11, "source11": 11, "long14": 14, "short8": 8}


@pytest.mark.parametrize("family", FAMILIES)
def test_oracle_has_every_component_of_the_site_map(family):
    model, _ = tiny(family)
    assert set(nv.SiteMap(model).components()) == set(COMPONENTS[family])
    seen = oracle(model, ids(family, BASE))[1]
    assert set(seen) == {(c, layer) for c in COMPONENTS[family] for layer in range(LAYERS)}


# --- every component: collect and patch ------------------------------------------------------


def every_component(verb: str, whole: list, by_head: list) -> list:
    """(family, Case) for every component of every family, at each (pos, head) selection."""
    params = []
    for family in FAMILIES:
        for component in COMPONENTS[family]:
            for pos, head in by_head if component in BY_HEAD else whole:
                case = Case(verb, component, pos, head)
                params.append(pytest.param(family, case, id=f"{family}-{component}-{case}"))
    return params


@pytest.mark.parametrize(
    ("family", "case"), every_component("collect", [("*", None)], [("*", "*")])
)
def test_collect_reads_the_oracle_activations(family, case):
    res = run(family, spec(case.statement(), source=None, metric=False))
    check(res, expected(family, case, source=None), case.axes, family)


POS = [("-1", None), ("*", None)]
HEAD = [("-1", "1"), ("-1", "*"), ("[2, 7]", "*")]


@pytest.mark.parametrize(("family", "case"), every_component("patch", POS, POS + HEAD))
def test_patch_matches_the_oracle(family, case):
    res = run(family, spec(case.statement()))
    check(res, expected(family, case), case.axes, family)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    ("case", "base", "source"),
    [
        (Case("patch", "block_output", "-1"), BASE, LONG_SOURCE),
        (Case("patch", "block_output", "*"), BASE, LONG_SOURCE),
        (Case("patch", "block_output", "[0, 5]"), BASE, LONG_SOURCE),
        (Case("patch", "block_output", "3->12"), BASE, LONG_SOURCE),
        (Case("patch", "block_output", "-3..-1"), BASE, SHORT),
        (Case("restore", Z, "-1", "*"), BASE, LONG_SOURCE),
        (Case("patch", "head_query_output", "-1", "*"), SHORT, LONG_SOURCE),
    ],
    ids=lambda v: PROMPT_NAMES.get(v) or f"{v.verb}-{v.component}-{v}",
)
def test_patch_between_prompts_of_different_lengths(family, case, base, source):
    res = run(family, spec(case.statement(), base=base, source=source))
    check(res, expected(family, case, base, source), case.axes, family, base, source)


# --- the other verbs -----------------------------------------------------------------------

MEAN_PROMPTS = [SOURCE, SHORT]  # of different lengths: padding must stay out of the mean

VERBS = [
    Case("zero", "block_output", "*"),
    Case("zero", Z, "-1", "*"),
    Case("zero", Z, None, "*"),  # every position of one head: head ablation
    Case("zero", "mlp_output", None, layer="1"),
    Case("add", "block_output", "-1", by=1),
    Case("add", "block_output", "*", by=2.0),
    Case("add", Z, "*", "1", by=1),
    Case("add", Z, "-1", "*", by=-0.5),
    Case("add", "block_output", "-1"),
    Case("add", Z, "-1", "*"),
    Case("subtract", "block_output", "*"),
    Case("subtract", Z, "-1", "*"),
    Case("subtract", Z, "[2, 7]", "1"),
    Case("subtract", "block_output", "-1", by=1),
    Case("mean", "block_output", "-1"),
    Case("mean", "block_output", "*"),
    Case("mean", "block_output", "-1", over=True),
    Case("mean", Z, "-1", "*"),
    Case("mean", Z, None, "*"),  # mean ablation of a head at every position
    Case("mean", Z, "*", "2", over=True),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", VERBS, ids=lambda c: f"{c.verb}-{c.component}-{c}")
def test_verb_matches_the_oracle(family, case):
    namespace = {"prompts": MEAN_PROMPTS}
    if case.by is not None:
        namespace["vec"] = vector(family, case)
    source = SOURCE if case.verb in ("add", "subtract") and case.by is None else None
    res = run(family, spec(case.statement(), source=source), namespace=namespace)
    want = expected(family, case, source=source, mean_over=MEAN_PROMPTS if case.over else None)
    check(res, want, case.axes, family, source=source)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "case",
    [
        Case("collect", "block_output", "[0, 10]"),
        Case("collect", Z, "-1", "1"),
        Case("collect", Z, "-3..-1", "*", layer="1"),
        Case("collect", "head_key_output", "*", "[1, 0]"),
        Case("collect", "mlp_activation", "last", layer="0"),
    ],
    ids=str,
)
def test_collect_selections(family, case):
    res = run(family, spec(case.statement(), source=None, metric=False))
    check(res, expected(family, case, source=None), case.axes, family)


# --- a batch of base prompts of different lengths ------------------------------------------

BATCH = [BASE, SHORT]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "case",
    [
        Case("patch", "block_output", "-1"),
        Case("patch", Z, "-3..-1", "*"),
        Case("patch", "head_key_output", "last", "*"),
        Case("zero", Z, None, "1"),
        Case("add", "mlp_output", "-2", by=1),
        Case("collect", "block_output", "-1"),
    ],
    ids=lambda c: f"{c.verb}-{c.component}-{c}",
)
def test_batch_of_two_lengths_equals_single_prompt_runs(family, case):
    namespace = {"vec": vector(family, case)} if case.by is not None else None
    source = SOURCE if case.verb == "patch" else None
    metric = case.verb != "collect"
    res = run(family, spec(case.statement(), BATCH, source, metric), namespace=namespace)
    assert res.axes == ("example", *case.axes)
    for i, base in enumerate(BATCH):
        alone = run(family, spec(case.statement(), base, source, metric), namespace=namespace)
        torch.testing.assert_close(res.values[i], alone.values, atol=TOL, rtol=0)
        want = expected(family, case, base, source)
        torch.testing.assert_close(res.values[i].double(), want, atol=TOL, rtol=0)
        if metric:
            torch.testing.assert_close(res.corrupted[i], alone.corrupted, atol=TOL, rtol=0)
        if source is not None:
            torch.testing.assert_close(res.clean[i], alone.clean, atol=TOL, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_mean_over_a_batch_averages_every_real_position_of_every_base_prompt(family):
    case = Case("mean", Z, "-1", "*")
    res = run(family, spec(case.statement(), BATCH, None))
    for i, base in enumerate(BATCH):
        want = expected(family, case, base, None, mean_over=BATCH)
        torch.testing.assert_close(res.values[i].double(), want, atol=TOL, rtol=0)


# --- float32, as users load models ---------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "case", [Case("patch", "block_output", "*"), Case("patch", Z, "-1", "*")], ids=str
)
def test_float32_model_matches_the_float64_oracle(family, case):
    res = run(family, spec(case.statement()), dtype=torch.float32)
    check(res, expected(family, case), case.axes, family)
