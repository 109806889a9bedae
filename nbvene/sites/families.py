"""One small adapter per architecture family: where each component lives inside a block.

Families are chosen by `config.model_type` and checked against the module structure, never by
the model's Python class, so subclasses and new `transformers` releases keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from nbvene.sites.view import WHOLE, View


@dataclass(frozen=True)
class Part:
    """A component's place inside one block: a module path below the block, a hook kind, a view.

    With io "residual", the component is the module's output added to the block's input: the
    residual stream after attention (`resid_mid`), which no single module's input or output
    carries (the block adds it back from a variable, past the hooks).
    """

    path: str
    io: str
    view: View = WHOLE


def _mid(attention_out: str) -> dict[str, Part]:
    return {"resid_mid": Part(attention_out, "residual")}


@dataclass(frozen=True)
class Shape:
    """Head counts of a model, read from its config."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config) -> Shape:
        hidden = _first(config, "hidden_size", "n_embd", "d_model")
        heads = _first(config, "num_attention_heads", "n_head", "num_heads")
        kv_heads = _first(config, "num_key_value_heads", "n_head_kv", default=heads) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        return cls(hidden, heads, kv_heads, head_dim)


def _first(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _weights(attn: str, s: Shape) -> dict[str, Part]:
    """Attention probabilities of the module that calls transformers' attention interface."""
    return {"attention_weight": Part(attn, "weights", View(heads=s.heads, by_head=True))}


KEY_VALUE_HEADS = frozenset({"head_key_output", "head_value_output"})
"""Components split into key/value heads: as many as the query heads, or fewer under grouped
query attention (`num_key_value_heads`), in every family."""


def _attention(attn: str, q: str, k: str, v: str, o: str, s: Shape) -> dict[str, Part]:
    """Parts of an attention module with separate q/k/v projections."""
    return {
        "attention_input": Part(attn, "input"),
        "attention_output": Part(attn, "output"),
        "attention_value_output": Part(o, "input"),
        "head_attention_value_output": Part(o, "input", View(heads=s.heads, by_head=True)),
        "query_output": Part(q, "output"),
        "key_output": Part(k, "output"),
        "value_output": Part(v, "output"),
        "head_query_output": Part(q, "output", View(heads=s.heads, by_head=True)),
        "head_key_output": Part(k, "output", View(heads=s.kv_heads, by_head=True)),
        "head_value_output": Part(v, "output", View(heads=s.kv_heads, by_head=True)),
    }


def _fused_attention(attn: str, qkv: str, o: str, views: tuple[View, View, View]) -> dict:
    q, k, v = views
    flat = [View(x.start, x.stop, x.heads, False, x.fused, x.part) for x in views]
    return {
        "attention_input": Part(attn, "input"),
        "attention_output": Part(attn, "output"),
        "attention_value_output": Part(o, "input"),
        "head_attention_value_output": Part(o, "input", View(heads=q.heads, by_head=True)),
        "query_output": Part(qkv, "output", flat[0]),
        "key_output": Part(qkv, "output", flat[1]),
        "value_output": Part(qkv, "output", flat[2]),
        "head_query_output": Part(qkv, "output", q),
        "head_key_output": Part(qkv, "output", k),
        "head_value_output": Part(qkv, "output", v),
    }


def _mlp(mlp: str, down: str) -> dict[str, Part]:
    return {
        "mlp_input": Part(mlp, "input"),
        "mlp_output": Part(mlp, "output"),
        "mlp_activation": Part(down, "input"),
    }


BLOCK = {"block_input": Part("", "input"), "block_output": Part("", "output")}


def _norm_inputs(attention_norm: str, mlp_norm: str) -> dict[str, Part]:
    """TransformerLens' `attn_in` and `mlp_in`: the residual stream as each branch's norm reads
    it, before the norm (patching it changes that branch only, not the residual stream)."""
    return {"attn_in": Part(attention_norm, "input"), "mlp_in": Part(mlp_norm, "input")}


class Family:
    """Where the blocks are, and where each component sits inside one block."""

    name: str
    model_types: tuple[str, ...] = ()
    blocks: str
    probe: tuple[str, ...] = ()  # paths inside a block that must exist for the family to fit

    def parts(self, config, shape: Shape) -> dict[str, Part]:
        raise NotImplementedError

    def transformerlens(self, config) -> dict[str, Part | None]:
        """Where TransformerLens' names (by short name) sit when no component holds their
        tensor: `attn_in`, `mlp_in`, and names meaning another tensor here than elsewhere;
        None where no module holds TransformerLens' tensor in this family."""
        return {}

    def fits(self, model: nn.Module) -> bool:
        try:
            blocks = model.get_submodule(self.blocks)
        except AttributeError:
            return False
        if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
            return False
        try:
            for path in self.probe:
                blocks[0].get_submodule(path)
        except AttributeError:
            return False
        return True


class Llama(Family):
    name = "llama"
    model_types = (
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen3",
        "gemma",
        "gemma2",
        "gemma3_text",
        "olmo",
        "olmo2",
        "granite",
        "smollm3",
    )
    blocks = "model.layers"
    probe = ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj")

    def parts(self, config, s):
        # Gemma 2/3 and OLMo 2 normalise the attention output before adding it
        post_norm = config.model_type in ("gemma2", "gemma3_text", "olmo2")
        mid = _mid("post_attention_layernorm" if post_norm else "self_attn")["resid_mid"]
        attention = _attention(
            "self_attn",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            s,
        )
        weights = _weights("self_attn", s)
        return {**BLOCK, "resid_mid": mid, **attention, **weights, **_mlp("mlp", "mlp.down_proj")}

    def transformerlens(self, config):
        if config.model_type == "olmo2":  # no norm before attention and MLP: they read the stream
            return {
                **_norm_inputs("self_attn", "mlp"),
                "attn_out": Part("post_attention_layernorm", "output"),
                "mlp_out": Part("post_feedforward_layernorm", "output"),
            }
        if config.model_type in ("gemma2", "gemma3_text"):
            # TransformerLens' attn_out and mlp_out are what the block adds: after the post-norms
            return {
                **_norm_inputs("input_layernorm", "pre_feedforward_layernorm"),
                "attn_out": Part("post_attention_layernorm", "output"),
                "mlp_out": Part("post_feedforward_layernorm", "output"),
            }
        return _norm_inputs("input_layernorm", "post_attention_layernorm")


class Phi3(Family):
    name = "phi3"
    model_types = ("phi3",)
    blocks = "model.layers"
    probe = ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.down_proj")

    def parts(self, config, s):
        q_end = s.heads * s.head_dim
        k_end = q_end + s.kv_heads * s.head_dim
        views = (
            View(0, q_end, s.heads, True),
            View(q_end, k_end, s.kv_heads, True),
            View(k_end, k_end + s.kv_heads * s.head_dim, s.kv_heads, True),
        )
        attention = _fused_attention("self_attn", "self_attn.qkv_proj", "self_attn.o_proj", views)
        mid = _mid("self_attn")
        weights = _weights("self_attn", s)
        return {**BLOCK, **mid, **attention, **weights, **_mlp("mlp", "mlp.down_proj")}

    def transformerlens(self, config):
        return _norm_inputs("input_layernorm", "post_attention_layernorm")


class GPT2(Family):
    name = "gpt2"
    model_types = ("gpt2",)
    blocks = "transformer.h"
    probe = ("attn.c_attn", "attn.c_proj", "mlp.c_proj")

    def parts(self, config, s):
        d = s.hidden
        views = tuple(View(i * d, (i + 1) * d, s.heads, True) for i in range(3))
        attention = _fused_attention("attn", "attn.c_attn", "attn.c_proj", views)
        mid = _mid("attn")
        weights = _weights("attn", s)
        return {**BLOCK, **mid, **attention, **weights, **_mlp("mlp", "mlp.c_proj")}

    def transformerlens(self, config):
        return _norm_inputs("ln_1", "ln_2")


class GPTNeoX(Family):
    name = "gpt_neox"
    model_types = ("gpt_neox",)
    blocks = "gpt_neox.layers"
    probe = ("attention.query_key_value", "attention.dense", "mlp.dense_4h_to_h")

    def parts(self, config, s):
        views = tuple(View(heads=s.heads, by_head=True, fused=3, part=i) for i in range(3))
        attention = _fused_attention(
            "attention", "attention.query_key_value", "attention.dense", views
        )
        weights = _weights("attention", s)
        parts = {**BLOCK, **attention, **weights, **_mlp("mlp", "mlp.dense_4h_to_h")}
        if not getattr(config, "use_parallel_residual", True):
            parts.update(_mid("attention"))
        return parts

    def transformerlens(self, config):
        return _norm_inputs("input_layernorm", "post_attention_layernorm")


class GPTNeo(Family):
    name = "gpt_neo"
    model_types = ("gpt_neo",)
    blocks = "transformer.h"
    probe = ("attn.attention.q_proj", "attn.attention.out_proj", "mlp.c_proj")

    def parts(self, config, s):
        a = "attn.attention"
        attention = _attention(
            "attn", f"{a}.q_proj", f"{a}.k_proj", f"{a}.v_proj", f"{a}.out_proj", s
        )
        return {**BLOCK, **_mid("attn"), **attention, **_mlp("mlp", "mlp.c_proj")}

    def transformerlens(self, config):
        return _norm_inputs("ln_1", "ln_2")


class GPTJ(Family):
    name = "gptj"
    model_types = ("gptj",)
    blocks = "transformer.h"
    probe = ("attn.q_proj", "attn.out_proj", "mlp.fc_out")

    def parts(self, config, s):  # parallel residual: no resid_mid
        attention = _attention(
            "attn", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", s
        )
        return {**BLOCK, **attention, **_mlp("mlp", "mlp.fc_out")}


class OPT(Family):
    name = "opt"
    model_types = ("opt",)
    blocks = "model.decoder.layers"
    probe = ("self_attn.q_proj", "self_attn.out_proj", "fc1", "fc2")

    def parts(self, config, s):
        attention = _attention(
            "self_attn",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.out_proj",
            s,
        )
        mlp = {  # OPT has no MLP module: fc1 → activation → fc2 sit on the block itself
            "mlp_input": Part("fc1", "input"),
            "mlp_activation": Part("fc2", "input"),
            "mlp_output": Part("fc2", "output"),
        }
        return {**BLOCK, **_mid("self_attn"), **attention, **_weights("self_attn", s), **mlp}

    def transformerlens(self, config):
        if not getattr(config, "do_layer_norm_before", True):  # post-norm (OPT-350m)
            return {}
        return _norm_inputs("self_attn_layer_norm", "final_layer_norm")


class BERT(Family):
    """Encoders (BERT, RoBERTa): post-norm, so attention and MLP outputs include the norm."""

    name = "bert"
    model_types = ("bert", "roberta")
    probe = ("attention.self.query", "attention.output.dense", "intermediate", "output")

    def __init__(self, prefix: str):
        self.blocks = f"{prefix}.encoder.layer"

    def parts(self, config, s):
        attention = _attention(
            "attention",
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            s,
        )
        attention["attention_output"] = Part("attention.output", "output")
        mlp = {
            "mlp_input": Part("intermediate", "input"),
            "mlp_activation": Part("intermediate", "output"),
            "mlp_output": Part("output", "output"),
        }
        weights = _weights("attention.self", s)
        return {**BLOCK, "resid_mid": Part("attention", "output"), **attention, **weights, **mlp}

    def transformerlens(self, config):
        # TransformerLens' HookedEncoder: attn_out and mlp_out are the sublayers' projections,
        # before the residual sum and its norm; resid_mid and resid_post are that sum, which no
        # module outputs (nbvene's resid_mid and block_output are after the norm)
        return {
            "attn_out": Part("attention.output.dense", "output"),
            "mlp_out": Part("output.dense", "output"),
            "resid_mid": None,
            "resid_post": None,
        }


FAMILIES: tuple[Family, ...] = (
    Llama(),
    Phi3(),
    GPT2(),
    GPTNeoX(),
    GPTNeo(),
    GPTJ(),
    OPT(),
    BERT("bert"),
    BERT("roberta"),
)


class Discovered(Family):
    """The fallback for an unknown model: the longest list of identical blocks, and inside a
    block the children whose names say attention or MLP."""

    name = "discovered"

    def __init__(self, blocks: str, attention: str | None, mlp: str | None):
        self.blocks, self._attention, self._mlp = blocks, attention, mlp

    def parts(self, config, s):
        parts = dict(BLOCK)
        if self._attention:
            parts["attention_input"] = Part(self._attention, "input")
            parts["attention_output"] = Part(self._attention, "output")
        if self._mlp:
            parts["mlp_input"] = Part(self._mlp, "input")
            parts["mlp_output"] = Part(self._mlp, "output")
        return parts

    @classmethod
    def find(cls, model: nn.Module) -> Discovered | None:
        lists = [
            (len(m), name)
            for name, m in model.named_modules()
            if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(b) for b in m}) == 1
        ]
        if not lists:
            return None
        _, blocks = max(lists)
        block = model.get_submodule(blocks)[0]
        children = [name for name, _ in block.named_children()]
        attention = next((c for c in children if "attn" in c or "attention" in c), None)
        mlp = next((c for c in children if c in ("mlp", "ffn", "feed_forward", "ff")), None)
        return cls(blocks, attention, mlp)


def family_of(model: nn.Module) -> Family | None:
    """The adapter for a model: by model_type and structure, then by structure, then discovery."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    by_type = [f for f in FAMILIES if model_type in f.model_types]
    for family in (*by_type, *FAMILIES):
        if family.fits(model):
            return family
    return Discovered.find(model)


# --- what the engine asks of a family: its final norm, and its dimensions -------------------

FINAL_NORMS: dict[str, str | None] = {
    # The norm between the last block and the LM head, for families whose model forward is
    # embeddings → blocks(hidden, **kwargs) → norm → head: rows patched at layer l start there.
    # None: rows of that family run full forward passes (the same values, from layer 0).
    "llama": "model.norm",
    "phi3": "model.norm",
    "gpt2": "transformer.ln_f",
    "gpt_neox": "gpt_neox.final_layer_norm",
    "gpt_neo": None,
    "gptj": None,
    "opt": None,
    "bert": None,  # encoders: no causal LM head after a final norm
    "discovered": None,
}


def final_norm(family: Family) -> str | None:
    """The module path of a family's final norm, or None where its rows never start at their
    layer. Every family declares one (a new family without an entry is an error here, not a
    silent loss of start-at-layer)."""
    if family.name not in FINAL_NORMS:
        raise LookupError(
            f"the {family.name!r} family declares no final norm: add it to FINAL_NORMS "
            "(None if its rows run full forward passes)"
        )
    return FINAL_NORMS[family.name]


@dataclass(frozen=True)
class Dimensions:
    """A model's sizes as its config gives them, under any of the names families use for them
    (None where the config does not say, or there is no config)."""

    hidden: int | None
    intermediate: int | None
    heads: int | None
    layers: int | None
    vocab: int | None


def dimensions(model: nn.Module) -> Dimensions:
    """The sizes in a model's config (what memory estimates and the engine read)."""
    config = getattr(model, "config", None)
    return Dimensions(
        hidden=_first(config, "hidden_size", "n_embd"),
        intermediate=_first(config, "intermediate_size", "n_inner"),
        heads=_first(config, "num_attention_heads", "n_head"),
        layers=_first(config, "num_hidden_layers", "n_layer"),
        vocab=_first(config, "vocab_size"),
    )
