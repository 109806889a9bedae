"""Sites on every family: the adapter SiteMap picks, every component it lists, patches that
round-trip, head counts, TransformerLens names, raw module paths, unknown models and user
mappings."""

from __future__ import annotations

import functools
from collections import OrderedDict

import pytest
import torch
from torch import nn

import nbvene as nv
from nbvene.errors import NbveneError
from nbvene.models.tokenizer import tiny_tokenizer
from nbvene.sites import ALIASES, COMPONENTS
from nbvene.sites.names import TRANSFORMERLENS_ONLY, transformerlens_name

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"
# Encoders read the prediction at the mask token (the tokenizer adds no special tokens).
MASKED_BASE = f"{BASE} [MASK]."
MASKED_SOURCE = f"{SOURCE} [MASK]."
METRIC = 'metric: logit_diff(" Paris", " Rome")'
ATOL = 1e-5

ADAPTER = {
    "gpt2": "gpt2",
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma": "llama",
    "gemma2": "llama",
    "olmo": "llama",
    "phi3": "phi3",
    "gpt_neox": "gpt_neox",
    "gpt_neo": "gpt_neo",
    "opt": "opt",
    "gptj": "gptj",
    "bert": "bert",
    "roberta": "bert",
}
BLOCKS = {
    "gpt2": "transformer.h",
    "llama": "model.layers",
    "phi3": "model.layers",
    "gpt_neox": "gpt_neox.layers",
    "gpt_neo": "transformer.h",
    "opt": "model.decoder.layers",
    "gptj": "transformer.h",
}
GQA = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "phi3"}
# Attention and MLP read the same block input and add up in parallel: no resid_mid.
PARALLEL = {"gpt_neox", "gptj"}
MASKED = {"bert", "roberta"}
FAMILIES = list(nv.models.FAMILIES)
HEADS, KV_HEADS, HEAD_DIM, HIDDEN, MLP = 4, 2, 16, 64, 128
# The tiny models' shapes; variants with other head layouts are built with config overrides.
VARIANTS = {
    "gpt_neox, sequential residual": ("gpt_neox", {"use_parallel_residual": False}),
    "qwen3, head_dim 32 (q_proj wider than hidden)": ("qwen3", {"head_dim": 32}),
    "gemma, head_dim 8": ("gemma", {"head_dim": 8}),
    "mistral, one key/value head": ("mistral", {"num_key_value_heads": 1}),
}
HOOK_NAMES = {  # TransformerLens hook names inside blocks.{l}
    "hook_resid_pre": "block_input",
    "hook_resid_mid": "resid_mid",
    "hook_resid_post": "block_output",
    "hook_attn_in": "attn_in",
    "hook_attn_out": "attention_output",
    "hook_mlp_in": "mlp_in",
    "hook_mlp_out": "mlp_output",
    "mlp.hook_post": "mlp_activation",
    "attn.hook_q": "head_query_output",
    "attn.hook_k": "head_key_output",
    "attn.hook_v": "head_value_output",
    "attn.hook_z": "head_attention_value_output",
    "attn.hook_pattern": "attention_weight",
}


@functools.cache
def tiny(family: str, **overrides):
    return nv.models.tiny(family, seed=0, **overrides)


@functools.cache
def variant(name: str):
    family, overrides = VARIANTS[name]
    return tiny(family, **overrides)


def prompts(family: str) -> tuple[str, str]:
    return (MASKED_BASE, MASKED_SOURCE) if family in MASKED else (BASE, SOURCE)


def run(model, tok, body: str, base: str, source: str | None = None, **kwargs):
    lines = [f'base: "{base}"'] + ([f'source: "{source}"'] if source is not None else [])
    return nv.run("\n".join([*lines, body]), model=model, tokenizer=tok, **kwargs)


def close(actual, expected, atol: float = ATOL) -> None:
    actual = torch.as_tensor(actual, dtype=torch.float32)
    expected = torch.as_tensor(expected, dtype=torch.float32).expand_as(actual)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def head_suffix(component: str, sites: nv.SiteMap | None = None) -> str:
    if sites is not None and component in sites.parts:
        by_head = sites.heads(sites.resolve(component)) is not None
    else:
        by_head = component.startswith("head_") or component == "attention_weight"
    return " head=*" if by_head else ""


def expected_components(family: str, model) -> set[str]:
    """Every component but attention_weight, which only families whose attention goes through
    transformers' attention interface have (checked wherever a family lists it)."""
    every = set(COMPONENTS) - {"attention_weight"}
    parallel = family in PARALLEL and getattr(model.config, "use_parallel_residual", True)
    return every - {"resid_mid"} if parallel else every


def listed(sites: nv.SiteMap) -> set[str]:
    return set(sites.components()) - {"attention_weight"}


def width(component: str, sites: nv.SiteMap, length: int) -> tuple[int, ...]:
    """The shape of one position's units at a component (`length` tokens in the prompt)."""
    s = sites.shape
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    return {
        "mlp_activation": (MLP,),
        "attention_value_output": (q,),
        "query_output": (q,),
        "key_output": (kv,),
        "value_output": (kv,),
        "head_attention_value_output": (s.heads, s.head_dim),
        "head_query_output": (s.heads, s.head_dim),
        "head_key_output": (s.kv_heads, s.head_dim),
        "head_value_output": (s.kv_heads, s.head_dim),
        "attention_weight": (s.heads, length),  # one probability per key, per head
    }.get(component, (s.hidden,))


# --- the adapter and its components --------------------------------------------------------


def test_every_tiny_family_has_an_expected_adapter():
    assert set(ADAPTER) == set(nv.models.FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_sitemap_picks_the_family_adapter_and_resolves_every_component(family):
    model, _ = tiny(family)
    sites = nv.SiteMap(model)
    assert sites.family_name == ADAPTER[family]
    assert sites.n_layers == 2
    blocks = BLOCKS.get(ADAPTER[family], f"{family}.encoder.layer")
    assert sites.family.blocks == blocks
    components = sites.components()
    assert len(components) == len(set(components))
    assert listed(sites) == expected_components(family, model)
    assert set(sites.parts) == set(components)
    for name in components:
        component = sites.resolve(name)
        assert component.name == name and not component.raw
        assert sites.layered(component)
        for layer in range(sites.n_layers):
            site = sites.site(component, layer)
            io = ("weights",) if name == "attention_weight" else ("input", "output")
            assert site.layer == layer and site.io in io
            assert site.module == f"{blocks}.{layer}" or site.module.startswith(
                f"{blocks}.{layer}."
            )
            model.get_submodule(site.module)  # exists
    for missing in sorted(set(COMPONENTS) - set(components)):
        with pytest.raises(NbveneError, match="not available"):
            sites.resolve(missing)
    with pytest.raises(NbveneError, match="unknown component"):
        sites.resolve("block_outptu")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_component_reads_units_of_the_right_shape(family):
    model, tok = tiny(family)
    sites = nv.SiteMap(model)
    base, _ = prompts(family)
    length = len(tok(base)["input_ids"])
    for name in sites.components():
        res = run(model, tok, f"collect: {name} layer=* pos=-1", base)
        assert res.axes == ("layer",)
        assert tuple(res.values.shape) == (2, *width(name, sites, length)), name
        assert torch.isfinite(res.values).all()


def test_site_modules_for_llama_gpt2_and_bert():
    """Where a few components live: the module and hook kind, at layer 1."""
    table = {
        "llama": {
            "block_output": ("model.layers.1", "output"),
            "attention_value_output": ("model.layers.1.self_attn.o_proj", "input"),
            "head_key_output": ("model.layers.1.self_attn.k_proj", "output"),
            "mlp_activation": ("model.layers.1.mlp.down_proj", "input"),
        },
        "gpt2": {
            "block_input": ("transformer.h.1", "input"),
            "attention_output": ("transformer.h.1.attn", "output"),
            "head_value_output": ("transformer.h.1.attn.c_attn", "output"),
            "mlp_activation": ("transformer.h.1.mlp.c_proj", "input"),
        },
        "bert": {
            "attention_output": ("bert.encoder.layer.1.attention.output", "output"),
            "mlp_activation": ("bert.encoder.layer.1.intermediate", "output"),
            "mlp_output": ("bert.encoder.layer.1.output", "output"),
        },
    }
    for family, rows in table.items():
        sites = nv.SiteMap(tiny(family)[0])
        for name, (module, io) in rows.items():
            site = sites.site(sites.resolve(name), 1)
            assert (site.module, site.io) == (module, io), (family, name)
            part = sites.parts[name]
            assert site.module.endswith(part.path) and site.io == part.io


# --- patches that round-trip ------------------------------------------------------------------


def assert_self_patch_changes_nothing(model, tok, family: str) -> None:
    """Every component, every layer, every position (and head) from a source that is the base
    itself: the metric stays the unpatched base's."""
    sites = nv.SiteMap(model)
    base, _ = prompts(family)
    for name in sites.components():
        body = f"patch: {name} layer=*{head_suffix(name, sites)}\n{METRIC}"
        res = run(model, tok, body, base, base)
        assert res.axes[0] == "layer" and len(res.axes[0].labels) == sites.n_layers
        close(res.clean, res.corrupted)
        close(res.values, res.corrupted)


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_every_component_from_the_base_itself_changes_nothing(family):
    model, tok = tiny(family)
    assert_self_patch_changes_nothing(model, tok, family)


@pytest.mark.parametrize("family", FAMILIES)
def test_patching_the_last_block_output_at_the_read_position_gives_the_source_metric(family):
    model, tok = tiny(family)
    base, source = prompts(family)
    # Decoders read the next token at the last position; encoders at the mask token.
    read = '"[MASK]"' if family in MASKED else "-1"
    res = run(model, tok, f"patch: block_output layer=* pos={read}\n{METRIC}", base, source)
    assert res.axes == ("layer",)
    assert abs(float(res.clean - res.corrupted)) > 1e-4  # the two prompts do differ
    close(res.values[-1], res.clean)
    # After the last block nothing mixes positions: patching any other position there leaves
    # the prediction alone.
    res = run(model, tok, f"patch: block_output layer=-1 pos=0\n{METRIC}", base, source)
    close(res.values, res.corrupted)


def test_the_mask_token_is_found_by_its_text():
    model, tok = tiny("bert")
    by_text = run(
        model,
        tok,
        f'patch: block_output layer=* pos="[MASK]"\n{METRIC}',
        MASKED_BASE,
        MASKED_SOURCE,
    )
    by_index = run(
        model, tok, f"patch: block_output layer=* pos=-2\n{METRIC}", MASKED_BASE, MASKED_SOURCE
    )
    assert tok.tokenize(MASKED_BASE)[-2].strip() == "[MASK]"
    close(by_text.values, by_index.values, atol=0)


# --- heads --------------------------------------------------------------------------------


def expected_heads(family: str) -> dict[str, int]:
    kv = KV_HEADS if family in GQA else HEADS
    return {
        "head_attention_value_output": HEADS,
        "head_query_output": HEADS,
        "head_key_output": kv,
        "head_value_output": kv,
        "attention_weight": HEADS,  # where the family has it: one row of weights per query head
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_head_components_count_query_and_key_value_heads(family):
    model, tok = tiny(family)
    sites = nv.SiteMap(model)
    heads = expected_heads(family)
    if family in GQA:
        assert model.config.num_key_value_heads == KV_HEADS
    for name in sites.components():
        assert sites.heads(sites.resolve(name)) == heads.get(name), name
    base, source = prompts(family)
    for name, count in heads.items():
        if name not in sites.parts:
            continue
        res = run(model, tok, f"patch: {name} layer=1 pos=-1 head=*\n{METRIC}", base, source)
        assert res.axes == ("head",) and res.axes[0].labels == tuple(range(count))
        kind = "key/value heads" if name in ("head_key_output", "head_value_output") else "heads"
        with pytest.raises(NbveneError, match=f"has {count} {kind}"):
            nv.plan(
                f'base: "{base}"\nsource: "{source}"\npatch: {name} layer=1 head={count}\n{METRIC}',
                model=model,
                tokenizer=tok,
            )
    with pytest.raises(NbveneError, match="head-level"):
        nv.plan(
            f'base: "{base}"\nsource: "{source}"\npatch: query_output layer=1 head=0\n{METRIC}',
            model=model,
            tokenizer=tok,
        )


def assert_heads_are_separate(model, tok, family: str) -> None:
    """Patching one head of q, k or v changes the attention output (z) of exactly the query
    heads that read it: the same head for q, the head's query group for k and v (grouped-query
    attention repeats each key/value head for consecutive query heads)."""
    sites = nv.SiteMap(model)
    s = sites.shape
    base, source = prompts(family)
    z = "head_attention_value_output"
    unpatched = run(model, tok, f"collect: {z} layer=0", base).values  # (pos, heads, head_dim)
    for name in ("head_query_output", "head_key_output", "head_value_output"):
        res = run(model, tok, f"patch: {name} layer=0 head=*\ncollect: {z} layer=0", base, source)
        assert res.axes == ("head",)
        changed = (res.values - unpatched).abs().amax(dim=(1, 3))  # (patched head, z head)
        group = s.heads // sites.heads(sites.resolve(name))
        for patched in range(changed.shape[0]):
            for head in range(s.heads):
                if head // group == patched:
                    assert changed[patched, head] > 1e-4, (name, patched, head)
                else:
                    assert changed[patched, head] < 1e-6, (name, patched, head)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_head_view_touches_only_its_own_heads(family):
    model, tok = tiny(family)
    assert_heads_are_separate(model, tok, family)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_other_head_layouts_and_residual_styles(name):
    model, tok = variant(name)
    family = VARIANTS[name][0]
    sites = nv.SiteMap(model)
    assert sites.family_name == ADAPTER[family]
    assert listed(sites) == expected_components(family, model)
    config = model.config
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    assert sites.heads(sites.resolve("head_query_output")) == config.num_attention_heads
    assert sites.heads(sites.resolve("head_value_output")) == kv
    base, _ = prompts(family)
    length = len(tok(base)["input_ids"])
    for component in ("query_output", "head_key_output", "attention_weight"):
        if component in sites.parts:
            res = run(model, tok, f"collect: {component} layer=0 pos=-1", base)
            assert tuple(res.values.shape) == width(component, sites, length)
    assert_self_patch_changes_nothing(model, tok, family)
    assert_heads_are_separate(model, tok, family)


# --- other names for the same sites -------------------------------------------------------

# fused qkv, GQA, per-head fused qkv, post-norms on the branches, encoder
NAMED = ["gpt2", "llama", "gpt_neox", "gemma2", "bert"]


def transformerlens_meaning(sites: nv.SiteMap, short: str, canonical: str):
    """What a TransformerLens name should equal on this model: the canonical component, or a
    user mapping to the module the family places TransformerLens' tensor at (`attn_in`; `attn_out`
    after Gemma 2's post-norm), or None where the model has neither."""
    if short not in sites.transformerlens:
        return (canonical, None) if canonical in sites.parts else (None, None)
    part = sites.transformerlens[short]
    if part is None:  # TransformerLens' tensor is held by no module of this family
        return None, None
    return "tl", {"tl": f"{sites.family.blocks}[{{layer}}].{part.path}.{part.io}"}


@pytest.mark.parametrize("family", NAMED)
def test_transformerlens_aliases_equal_the_canonical_names(family):
    model, tok = tiny(family)
    sites = nv.SiteMap(model)
    base, source = prompts(family)
    for alias in [*ALIASES, *TRANSFORMERLENS_ONLY]:
        short = "post" if alias == "mlp_post" else alias
        canonical, mapping = transformerlens_meaning(sites, short, ALIASES.get(alias, alias))
        body = f"layer=* pos=[3, -1]{head_suffix(canonical or alias, sites)}\n{METRIC}"
        if canonical is None:
            with pytest.raises(NbveneError):
                run(model, tok, f"patch: {alias} {body}", base, source)
            continue
        ours = run(model, tok, f"patch: {alias} {body}", base, source)
        theirs = run(model, tok, f"patch: {canonical} {body}", base, source, sites=mapping)
        assert ours.axes == theirs.axes
        close(ours.values, theirs.values)


@pytest.mark.parametrize("family", NAMED)
def test_transformerlens_hook_names_equal_the_canonical_names_per_layer(family):
    model, tok = tiny(family)
    sites = nv.SiteMap(model)
    base, source = prompts(family)
    for hook, name in HOOK_NAMES.items():
        short, _ = transformerlens_name(f"blocks.0.{hook}")
        canonical, mapping = transformerlens_meaning(sites, short, name)
        heads = head_suffix(canonical or name, sites)
        if canonical is None:
            with pytest.raises(NbveneError):
                run(model, tok, f"patch: blocks.0.{hook} pos=-1\n{METRIC}", base, source)
            continue
        body = f"patch: {canonical} layer=* pos=[3, -1]{heads}\n{METRIC}"
        reference = run(model, tok, body, base, source, sites=mapping)
        for layer in range(sites.n_layers):
            named = f"blocks.{layer}.{hook}"
            res = run(model, tok, f"patch: {named} pos=[3, -1]{heads}\n{METRIC}", base, source)
            assert res.axes == reference.axes[1:]
            close(res.values, reference.values[layer])
            with pytest.raises(NbveneError, match="drop layer="):
                nv.plan(
                    f'base: "{base}"\nsource: "{source}"\npatch: {named} layer=1\n{METRIC}',
                    model=model,
                    tokenizer=tok,
                )


def test_a_hook_name_past_the_last_layer_is_refused_by_the_plan():
    model, tok = tiny("llama")  # 2 layers
    spec = f'base: "{BASE}"\nsource: "{SOURCE}"\npatch: blocks.5.hook_resid_pre pos=-1\n{METRIC}'
    with pytest.raises(NbveneError, match="out of range"):
        nv.plan(spec, model=model, tokenizer=tok)


RAW_PATHS = {
    "llama": [
        ("model.layers[1].mlp.down_proj.output", "mlp_output", 1),
        ("model.layers[1].mlp.down_proj.input", "mlp_activation", 1),
        ("model.layers[0].self_attn.o_proj.input", "attention_value_output", 0),
        ("model.layers[0].output", "block_output", 0),
    ],
    "gpt2": [
        ("transformer.h[1].mlp.c_proj.output", "mlp_output", 1),
        ("transformer.h[1].mlp.c_proj.input", "mlp_activation", 1),
        ("transformer.h[0].attn.c_proj.input", "attention_value_output", 0),
        ("transformer.h[0].input", "block_input", 0),
    ],
}


@pytest.mark.parametrize("family", list(RAW_PATHS))
def test_raw_module_paths_equal_the_matching_component(family):
    model, tok = tiny(family)
    for path, canonical, layer in RAW_PATHS[family]:
        reference = run(
            model, tok, f"patch: {canonical} layer={layer} pos=*\n{METRIC}", BASE, SOURCE
        )
        res = run(model, tok, f"patch: {path} pos=*\n{METRIC}", BASE, SOURCE)
        assert res.axes == reference.axes == ("pos",)
        close(res.values, reference.values)
        assert (reference.values - reference.corrupted).abs().max() > 1e-4
        collected = run(model, tok, f"collect: {path} pos=-1", BASE).values
        close(collected, run(model, tok, f"collect: {canonical} layer={layer} pos=-1", BASE).values)
    bad = (
        "model.layers[1].mlp.down_prj.output"
        if family == "llama"
        else "transformer.h[1].mlp.c_prj.output"
    )
    with pytest.raises(NbveneError, match="has no module"):
        nv.plan(
            f'base: "{BASE}"\nsource: "{SOURCE}"\npatch: {bad} pos=-1\n{METRIC}',
            model=model,
            tokenizer=tok,
        )


# --- models nbvene has no adapter for ------------------------------------------------------

TOKENIZER = tiny_tokenizer()


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.attn = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        # A causal mix of positions (the running mean) stands in for attention.
        steps = torch.arange(1, x.shape[1] + 1, device=x.device).view(1, -1, 1)
        x = x + self.attn(x.cumsum(1) / steps)
        return x + self.mlp(x)


class Backbone(nn.Module):
    def __init__(self, vocab: int, d: int = 16, layers: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d) for _ in range(layers)])
        self.probe = nn.ModuleList([nn.Linear(d, d)])  # a shorter list: not the blocks
        self.unembed = nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask=None):
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


class Wrapped(nn.Module):
    """A custom model with no config, its blocks one module down."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone(len(TOKENIZER))

    def forward(self, input_ids, attention_mask=None):
        return self.backbone(input_ids, attention_mask)


@functools.cache
def custom() -> Wrapped:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Wrapped().eval()


def test_an_unknown_model_is_discovered():
    model = custom()
    sites = nv.SiteMap(model)
    assert sites.family_name == "discovered"
    assert sites.family.blocks == "backbone.blocks"
    assert sites.n_layers == 3
    assert sites.components() == [
        "block_input",
        "block_output",
        "attention_input",
        "attention_output",
        "mlp_input",
        "mlp_output",
    ]
    assert sites.site(sites.resolve("mlp_output"), 2).module == "backbone.blocks.2.mlp"
    assert sites.site(sites.resolve("attention_input"), 0).module == "backbone.blocks.0.attn"
    for missing in ("resid_mid", "head_query_output", "mlp_activation"):
        with pytest.raises(NbveneError, match="not available"):
            sites.resolve(missing)


def test_an_unknown_model_runs_patches_and_collects():
    model, tok = custom(), TOKENIZER
    sites = nv.SiteMap(model)
    for name in sites.components():
        res = run(model, tok, f"patch: {name} layer=*\n{METRIC}", BASE, BASE)
        close(res.values, res.corrupted)
    res = run(model, tok, f"patch: block_output layer=* pos=-1\n{METRIC}", BASE, SOURCE)
    assert res.axes == ("layer",) and res.values.shape == (3,)
    assert abs(float(res.clean - res.corrupted)) > 1e-4
    close(res.values[-1], res.clean)

    raw = run(model, tok, f"patch: backbone.blocks[1].mlp.output pos=*\n{METRIC}", BASE, SOURCE)
    canonical = run(model, tok, f"patch: mlp_output layer=1 pos=*\n{METRIC}", BASE, SOURCE)
    close(raw.values, canonical.values)

    # A mapping with a {layer} template next to the discovered family.
    mapping = {"resid": "backbone.blocks[{layer}].output"}
    assert "resid" in nv.SiteMap(model, mapping).components()
    mapped = run(model, tok, f"patch: resid layer=* pos=-1\n{METRIC}", BASE, SOURCE, sites=mapping)
    close(mapped.values, res.values)

    # What the blocks compute, by hand.
    ids = torch.tensor([tok(BASE)["input_ids"]])
    with torch.no_grad():
        x = model.backbone.embed(ids)
        expected = []
        for block in model.backbone.blocks:
            x = block(x)
            expected.append(x[0, -1])
    collected = run(model, tok, "collect: block_output layer=* pos=-1", BASE)
    close(collected.values, torch.stack(expected))


class PlainMLP(nn.Module):
    """No blocks at all: an MLP over token embeddings."""

    def __init__(self, vocab: int):
        super().__init__()
        self.net = nn.Sequential(
            OrderedDict(
                embed=nn.Embedding(vocab, 8),
                hidden=nn.Linear(8, 16),
                act=nn.ReLU(),
                out=nn.Linear(16, vocab),
            )
        )

    def forward(self, input_ids, attention_mask=None):
        return self.net(input_ids)


def test_a_user_mapping_names_sites_of_a_plain_mlp():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PlainMLP(len(TOKENIZER)).eval()
    tok = TOKENIZER
    mapping = {"hidden": "net.hidden.output"}
    sites = nv.SiteMap(model, mapping)
    assert sites.family_name == "user mapping"
    assert sites.components() == ["hidden"]
    hidden = sites.resolve("hidden")
    assert (hidden.module, hidden.io) == ("net.hidden", "output")
    assert not sites.layered(hidden)
    with pytest.raises(NbveneError):
        sites.resolve("block_output")
    assert nv.SiteMap(model).family_name == "unknown"

    ids = torch.tensor([tok(BASE)["input_ids"]])
    with torch.no_grad():
        expected = model.net.hidden(model.net.embed(ids))[0]
    res = run(model, tok, "collect: hidden", BASE, sites=mapping)
    assert res.axes == () and res.values.shape == (ids.shape[1], 16)
    close(res.values, expected, atol=1e-6)
    close(run(model, tok, "collect: hidden pos=-1", BASE, sites=mapping).values, expected[-1])
    # Each position on its own: the last position, given the hidden units of the source's
    # " Tower" (position 4), predicts what the MLP predicts after " Tower".
    res = run(model, tok, f"patch: hidden pos=-1->4\n{METRIC}", BASE, SOURCE, sites=mapping)
    source_ids = torch.tensor([tok(SOURCE)["input_ids"]])
    paris, rome = (tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " Rome"))
    with torch.no_grad():
        after_tower = model(source_ids)[0, 4]
    assert abs(float(after_tower[paris] - after_tower[rome] - res.corrupted)) > 1e-4
    close(res.values, after_tower[paris] - after_tower[rome])

    with pytest.raises(NbveneError, match="unknown component"):
        run(model, tok, "collect: hidden", BASE)
    with pytest.raises(NbveneError, match=r"must end in \.input or \.output"):
        run(model, tok, "collect: hidden", BASE, sites={"hidden": "net.hidden"})
