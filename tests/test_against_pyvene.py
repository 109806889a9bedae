"""nbvene against pyvene 0.1.8: the same interchange at the same sites gives the same numbers.

Only on tiny GPT-2 and Llama, in the cases where pyvene 0.1.8 is right (see "Pitfalls seen in
pyvene 0.1.8" in shared/recipes/models.md): one example per call, a fresh `IntervenableModel`
for every call (no locations left over from an earlier call), no subspaces, eager attention (the
tiny models are built with it) and nothing that relies on the user's own hooks.

Where the two libraries give a component name to different tensors, the component is left out
of the comparison and the difference is pinned by a test of its own (`mlp_activation` on Llama).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch
from quiet import quiet

import nbvene as nv

with quiet():
    pv = pytest.importorskip("pyvene")

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"
METRIC = 'metric: logit_diff(" Paris", " Rome")'
SUBJECT = 3  # "oss" in the base, "fel" in the source: a position where the prompts differ
POSITIONS = (SUBJECT, -1)

# Components that name the same tensor in both libraries, checked against pyvene's
# models/gpt2/modelings_intervenable_gpt2.py and models/llama/modelings_intervenable_llama.py:
#
# * GPT-2 `mlp_activation`: pyvene hooks the output of `h[l].mlp.act`, nbvene the input of
#   `h[l].mlp.c_proj`; GPT2MLP computes c_proj(act(c_fc(x))), so it is the same tensor.
# * GPT-2 `attention_output`: pyvene hooks the output of `h[l].attn.resid_dropout`, nbvene the
#   first output of `h[l].attn`, which is that tensor (dropout is off in eval mode).
# * GPT-2 `attention_weight`: pyvene hooks the input of `h[l].attn.attn_dropout`, which
#   transformers 5 calls only when `reorder_and_upcast_attn` is set (its eager path drops out
#   with the functional form). Compared there, collecting only (pyvene's patch of it fails on
#   that path); on a default GPT-2 pyvene's patch silently does nothing. See
#   test_gpt2_attention_weight_against_pyvene. pyvene's Llama mapping has no attention_weight.
# * Llama `mlp_activation` differs (left out here; see
#   test_llama_mlp_activation_names_different_tensors): pyvene hooks the output of
#   `layers[l].mlp.act_fn`, i.e. act(gate_proj(x)) *before* the product with up_proj(x);
#   nbvene hooks the input of `layers[l].mlp.down_proj`, i.e. act(gate_proj(x)) * up_proj(x),
#   the vector the MLP actually writes out through down_proj.
# * Head components: both split q by the query heads and k, v by the key/value heads (pyvene's
#   llama mapping uses n_kv_head for head_key_output and head_value_output).
SHARED = (
    "block_input",
    "block_output",
    "mlp_input",
    "mlp_output",
    "attention_input",
    "attention_output",
    "attention_value_output",
    "query_output",
    "key_output",
    "value_output",
)
COMPONENTS = {"gpt2": (*SHARED, "mlp_activation"), "llama": SHARED}
HEAD_COMPONENTS = (
    "head_attention_value_output",
    "head_query_output",
    "head_key_output",
    "head_value_output",
)
FAMILIES = tuple(COMPONENTS)
ATOL = 1e-5
# Patching a query or key of these random tiny models moves the metric by only 1e-4 or so, so
# the effect (patched - unpatched) is also compared more tightly; the two libraries agree to
# about 1e-7.
EFFECT_ATOL = 1e-6


@dataclass(frozen=True)
class Case:
    family: str
    model: torch.nn.Module
    tok: object
    base: torch.Tensor  # (1, n) token ids
    source: torch.Tensor
    paris: int
    rome: int

    @property
    def length(self) -> int:
        return self.base.shape[1]


@functools.cache
def case(family: str, **overrides) -> Case:
    model, tok = nv.models.tiny(family, seed=0, **overrides)
    base = tok(BASE, return_tensors="pt")["input_ids"]
    source = tok(SOURCE, return_tensors="pt")["input_ids"]
    assert base.shape == source.shape, "the comparison needs base and source of one length"
    paris, rome = (tok.encode(w, add_special_tokens=False) for w in (" Paris", " Rome"))
    assert len(paris) == len(rome) == 1
    return Case(family, model, tok, base, source, paris[0], rome[0])


def nbvene_run(c: Case, body: str, source: str | None = SOURCE):
    lines = [f'base: "{BASE}"']
    if source is not None:
        lines.append(f'source: "{source}"')
    return nv.run("\n".join([*lines, body]), model=c.model, tokenizer=c.tok)


def pyvene_model(c: Case, component: str, layer: int, unit: str, units: int, kind=None):
    config = pv.IntervenableConfig(
        representations=[pv.RepresentationConfig(layer, component, unit, units)],
        intervention_types=kind or pv.VanillaIntervention,
    )
    with quiet():
        return pv.IntervenableModel(config, c.model)


def pyvene_logits(
    c: Case,
    component: str,
    layer: int,
    base_pos: list[int],
    source_pos: list[int] | None = None,
    head: int | None = None,
) -> torch.Tensor:
    """Last-token logits of the base with `component` at `layer` taken from the source run:
    one example, a fresh IntervenableModel, as pyvene's tutorials do it."""
    source_pos = base_pos if source_pos is None else source_pos
    base_pos = [p % c.length for p in base_pos]
    source_pos = [p % c.length for p in source_pos]
    if head is None:
        unit, base_loc, source_loc = "pos", [base_pos], [source_pos]
    else:  # "h.pos": [heads per example, positions per example]
        unit, base_loc, source_loc = "h.pos", [[[head]], [base_pos]], [[[head]], [source_pos]]
    model = pyvene_model(c, component, layer, unit, len(base_pos))
    with quiet(), torch.no_grad():
        _, patched = model(
            {"input_ids": c.base},
            [{"input_ids": c.source}],
            {"sources->base": ([source_loc], [base_loc])},
        )
    return patched.logits[0, -1]


def pyvene_collect(c: Case, component: str, layer: int, positions: list[int], head=None):
    positions = [p % c.length for p in positions]
    if head is None:
        unit, loc = "pos", [positions]
    else:
        unit, loc = "h.pos", [[[head]], [positions]]
    model = pyvene_model(c, component, layer, unit, len(positions), pv.CollectIntervention)
    with quiet(), torch.no_grad():
        (_, collected), _ = model({"input_ids": c.base}, unit_locations={"base": [loc]})
    return collected[0][0]  # (positions, d) or (heads, positions, head_dim)


def logit_diff(c: Case, logits: torch.Tensor) -> float:
    return float(logits[c.paris] - logits[c.rome])


def plain_logits(c: Case, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return c.model(input_ids=ids).logits[0, -1]


def close(actual, expected, atol: float = ATOL) -> None:
    actual = torch.as_tensor(actual, dtype=torch.float32)
    expected = torch.as_tensor(expected, dtype=torch.float32)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# --- interchange: per-layer (and per-position, per-head) values ---------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_block_output_trace_matches_pyvene_cell_by_cell(family):
    """The causal trace (layer=* pos=*) against one pyvene call per cell."""
    c = case(family)
    res = nbvene_run(c, f"patch: block_output layer=* pos=*\n{METRIC}")
    n_layers = c.model.config.num_hidden_layers
    assert res.axes == ("layer", "pos")
    assert res.values.shape == (n_layers, c.length)
    expected = [
        [logit_diff(c, pyvene_logits(c, "block_output", layer, [pos])) for pos in range(c.length)]
        for layer in range(n_layers)
    ]
    close(res.values, expected)
    close(res.corrupted, logit_diff(c, plain_logits(c, c.base)))
    close(res.clean, logit_diff(c, plain_logits(c, c.source)))


@pytest.mark.parametrize("family", FAMILIES)
def test_kl_over_the_whole_vocabulary_matches_pyvene(family):
    """kl(clean || patched) reads every logit, not only two: the whole next-token vector."""
    c = case(family)
    res = nbvene_run(c, "patch: block_output layer=* pos=[3, -1]\nmetric: kl")
    clean = plain_logits(c, c.source).log_softmax(-1)
    expected = []
    for layer in range(c.model.config.num_hidden_layers):
        row = []
        for pos in POSITIONS:
            run = pyvene_logits(c, "block_output", layer, [pos]).log_softmax(-1)
            row.append(float((clean.exp() * (clean - run)).sum()))
        expected.append(row)
    close(res.values, expected)
    assert torch.tensor(expected).abs().max() > 1e-4  # the patches do move the distribution


@pytest.mark.parametrize(
    ("family", "component"), [(f, comp) for f in FAMILIES for comp in COMPONENTS[f]]
)
def test_component_sweep_matches_pyvene_per_layer(family, component):
    """`layer=*` with two positions: every (layer, pos) cell equals pyvene's own run."""
    c = case(family)
    res = nbvene_run(c, f"patch: {component} layer=* pos=[3, -1]\n{METRIC}")
    assert res.axes == ("layer", "pos")
    expected = torch.tensor(
        [
            [logit_diff(c, pyvene_logits(c, component, layer, [pos])) for pos in POSITIONS]
            for layer in range(c.model.config.num_hidden_layers)
        ]
    )
    close(res.values, expected)
    close(res.values - res.corrupted, expected - res.corrupted, atol=EFFECT_ATOL)
    # Not a vacuous comparison: some cell moves the metric away from the unpatched base.
    assert (expected - res.corrupted).abs().max() > 2e-5


@pytest.mark.parametrize(
    ("family", "component"), [(f, comp) for f in FAMILIES for comp in HEAD_COMPONENTS]
)
def test_head_sweep_matches_pyvene_per_layer_and_head(family, component):
    c = case(family)
    res = nbvene_run(c, f"patch: {component} layer=* pos=[3, -1] head=*\n{METRIC}")
    assert res.axes == ("layer", "pos", "head")
    heads = len(res.axes[2].labels)
    config = c.model.config
    kv = component in ("head_key_output", "head_value_output")
    if family == "llama":
        assert heads == (config.num_key_value_heads if kv else config.num_attention_heads)
    else:
        assert heads == config.n_head
    expected = torch.tensor(
        [
            [
                [
                    logit_diff(c, pyvene_logits(c, component, layer, [pos], head=head))
                    for head in range(heads)
                ]
                for pos in POSITIONS
            ]
            for layer in range(config.num_hidden_layers)
        ]
    )
    close(res.values, expected)
    close(res.values - res.corrupted, expected - res.corrupted, atol=EFFECT_ATOL)
    assert (expected - res.corrupted).abs().max() > 2e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_several_positions_and_mapped_positions_match_pyvene(family):
    c = case(family)
    # A token text: every token of "Colosseum" (positions 1-4) at once, aligned to the source.
    res = nbvene_run(c, f'patch: block_output layer=* pos="Colosseum"\n{METRIC}')
    expected = [
        logit_diff(c, pyvene_logits(c, "block_output", layer, [1, 2, 3, 4])) for layer in (0, 1)
    ]
    close(res.values, expected)
    # base position a takes the source's position b: pyvene's (source, base) locations.
    for base_pos, source_pos in ((3, 4), (-1, 4), (4, 1)):
        res = nbvene_run(c, f"patch: block_output layer=0 pos={base_pos}->{source_pos}\n{METRIC}")
        patched = pyvene_logits(c, "block_output", 0, [base_pos], [source_pos])
        close(res.values, logit_diff(c, patched))


# --- collect ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_collect_matches_pyvene_collect_intervention(family):
    c = case(family)
    n_layers = c.model.config.num_hidden_layers
    everywhere = list(range(c.length))

    res = nbvene_run(c, "collect: block_output layer=* pos=*", source=None)
    assert res.axes == ("layer", "pos")
    assert res.values.shape == (n_layers, c.length, 64)
    for layer in range(n_layers):
        close(res.values[layer], pyvene_collect(c, "block_output", layer, everywhere))

    for component in ("attention_value_output", "mlp_output", "query_output"):
        res = nbvene_run(c, f"collect: {component} layer=1 pos=-1", source=None)
        close(res.values, pyvene_collect(c, component, 1, [-1])[0])

    for component in HEAD_COMPONENTS:
        res = nbvene_run(c, f"collect: {component} layer=* pos=[3, -1] head=*", source=None)
        assert res.axes == ("layer", "pos", "head")
        for layer in range(n_layers):
            for p, pos in enumerate(POSITIONS):
                for head in range(len(res.axes[2].labels)):
                    collected = pyvene_collect(c, component, layer, [pos], head=head)
                    close(res.values[layer, p, head], collected.reshape(-1))


def test_gpt2_attention_weight_against_pyvene():
    # Where pyvene's hook fires (reorder_and_upcast_attn), the weights it collects are nbvene's.
    c = case("gpt2", reorder_and_upcast_attn=True)
    res = nbvene_run(c, "collect: attention_weight layer=* pos=[3, -1] head=*", source=None)
    assert res.axes == ("layer", "pos", "head")
    assert res.values.shape == (2, 2, 4, c.length)
    for layer in range(2):
        for p, pos in enumerate(POSITIONS):
            for head in range(4):
                collected = pyvene_collect(c, "attention_weight", layer, [pos], head=head)
                close(res.values[layer, p, head], collected.reshape(-1))
    close(res.values.sum(-1), torch.ones(2, 2, 4))  # probabilities over the keys

    # On a default (eager) GPT-2, pyvene 0.1.8's patch never reaches the weights; nbvene's does.
    c = case("gpt2")
    res = nbvene_run(c, f"patch: attention_weight layer=0 pos=-1 head=*\n{METRIC}")
    theirs = [
        logit_diff(c, pyvene_logits(c, "attention_weight", 0, [-1], head=h)) for h in range(4)
    ]
    unpatched = logit_diff(c, plain_logits(c, c.base))
    close(theirs, torch.full((4,), unpatched), atol=1e-7)
    assert (res.values - res.corrupted).abs().max() > 2e-5


def test_llama_mlp_activation_names_different_tensors():
    """pyvene's Llama `mlp_activation` is act_fn's output; nbvene's is down_proj's input."""
    c = case("llama")
    ours = nbvene_run(c, "collect: mlp_activation layer=1 pos=-1", source=None).values
    down_in = "collect: model.layers[1].mlp.down_proj.input pos=-1"
    close(ours, nbvene_run(c, down_in, source=None).values, atol=0)
    theirs = pyvene_collect(c, "mlp_activation", 1, [-1])[0]
    act_out = "collect: model.layers[1].mlp.act_fn.output pos=-1"
    close(theirs, nbvene_run(c, act_out, source=None).values)
    assert (ours - theirs).abs().max() > 1e-3  # not the same tensor

    # Patching: pyvene's mlp_activation is nbvene's raw path to act_fn's output.
    for pos in POSITIONS:
        res = nbvene_run(c, f"patch: model.layers[0].mlp.act_fn.output pos={pos}\n{METRIC}")
        close(res.values, logit_diff(c, pyvene_logits(c, "mlp_activation", 0, [pos])))


# --- the user's own hooks -----------------------------------------------------------------


def test_nbvene_keeps_the_users_hooks_and_pyvene_removes_them():
    model, tok = nv.models.tiny("llama", seed=0)  # a model of its own: pyvene strips it
    block, mlp = model.model.layers[0], model.model.layers[1].mlp
    calls = {"forward": 0, "pre": 0}

    def shift(module, args, output):  # the user's edit: changes what the model computes
        calls["forward"] += 1
        return output + 0.5

    def count(module, args):
        calls["pre"] += 1

    block.register_forward_hook(shift)
    mlp.register_forward_pre_hook(count)
    ids = tok(BASE, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hooked = model(input_ids=ids).logits[0, -1]
    paris, rome = (tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " Rome"))

    res = nv.run(
        f'base: "{BASE}"\nsource: "{SOURCE}"\npatch: block_output layer=* pos=-1\n{METRIC}',
        model=model,
        tokenizer=tok,
    )
    # nbvene ran the model as the user has it (with the shift) and left both hooks in place.
    close(res.corrupted, float(hooked[paris] - hooked[rome]))
    # the user's own call, then the source and baseline pass (patched rows start after block 0)
    assert calls["forward"] >= 2 and calls["pre"] >= 3
    assert list(block._forward_hooks.values()) == [shift]
    assert list(mlp._forward_pre_hooks.values()) == [count]
    no_other_hooks = [
        name
        for name, m in model.named_modules()
        if m not in (block, mlp) and (m._forward_hooks or m._forward_pre_hooks)
    ]
    assert no_other_hooks == []
    before = dict(calls)
    with torch.no_grad():
        model(input_ids=ids)
    assert calls == {"forward": before["forward"] + 1, "pre": before["pre"] + 1}

    # pyvene 0.1.8 removes every forward hook of the model on each call, the user's included.
    config = pv.IntervenableConfig(
        representations=[pv.RepresentationConfig(1, "block_output", "pos", 1)],
        intervention_types=pv.VanillaIntervention,
    )
    with quiet(), torch.no_grad():
        intervenable = pv.IntervenableModel(config, model)
        intervenable(
            {"input_ids": ids},
            [{"input_ids": tok(SOURCE, return_tensors="pt")["input_ids"]}],
            {"sources->base": ([[[10]]], [[[10]]])},
        )
    assert not block._forward_hooks and not mlp._forward_pre_hooks
    before = dict(calls)
    with torch.no_grad():
        model(input_ids=ids)
    assert calls == before


# --- several sources: pyvene's parallel and serial modes ---------------------------------------


def pyvene_two_sources(c: Case, mode: str, third: torch.Tensor, sites, positions) -> torch.Tensor:
    """Last-token logits with two interventions, one per source (pyvene groups them one each):
    parallel, each from its own source run; serial, source_0 → source_1 → base."""
    config = pv.IntervenableConfig(
        representations=[pv.RepresentationConfig(layer, comp, "pos", 1) for comp, layer in sites],
        intervention_types=pv.VanillaIntervention,
        mode=mode,
    )
    with quiet():
        model = pv.IntervenableModel(config, c.model)
    (p0, p1) = positions
    if mode == "parallel":
        locations = {"sources->base": ([[[p0]], [[p1]]], [[[p0]], [[p1]]])}
    else:
        locations = {
            "source_0->source_1": ([[[p0]]], [[[p0]]]),
            "source_1->base": ([[[p1]]], [[[p1]]]),
        }
    with quiet(), torch.no_grad():
        _, patched = model(
            {"input_ids": c.base}, [{"input_ids": c.source}, {"input_ids": third}], locations
        )
    return patched.logits[0, -1]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["parallel", "serial"])
@pytest.mark.parametrize(
    ("sites", "positions"),
    [
        ((("block_output", 0), ("block_output", 1)), (SUBJECT, -1)),
        ((("mlp_output", 0), ("attention_output", 1)), (SUBJECT + 1, -1)),
    ],
)
def test_two_sources_match_pyvene_parallel_and_serial(family, mode, sites, positions):
    c = case(family)
    third = torch.randint(0, 500, c.base.shape, generator=torch.Generator().manual_seed(1))
    (comp0, layer0), (comp1, layer1) = sites
    (p0, p1) = (p % c.length for p in positions)
    into = " into s2" if mode == "serial" else ""
    res = nv.run(
        f"""
        base: {{base}}
        source s1: {{s1}}
        source s2: {{s2}}
        patch: {comp0} layer={layer0} pos={p0} from s1{into}
        patch: {comp1} layer={layer1} pos={p1} from s2
        metric: logit_diff(" Paris", " Rome")
        """,
        model=c.model,
        tokenizer=c.tok,
        namespace={"base": c.base[0], "s1": c.source[0], "s2": third[0]},
    )
    expected = logit_diff(c, pyvene_two_sources(c, mode, third, sites, (p0, p1)))
    close(res.values, expected)
    assert abs(expected - float(res.corrupted)) > EFFECT_ATOL  # the patches change the output
