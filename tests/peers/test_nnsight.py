"""nbvene against nnsight 0.8 itself: every nnsight path of docs/sites.md's definition table reads
the tensor nbvene collects at that component, and nnsight traces that patch, add and run ROME's
noise-and-restore (σ computed by hand from the embeddings the model consumes) give nbvene's
numbers. Tiny models, eager attention (nnsight reads the attention weights as the attention
module's second output, which only eager attention returns)."""

from __future__ import annotations

import functools
import re
import warnings

import pytest
import torch

import nbvene as nv
from nbvene.sites.peers import definitions

nnsight = pytest.importorskip("nnsight")

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"
METRIC = 'metric: logit_diff(" Paris", " Rome")'
FAMILIES = ["gpt2", "llama", "gpt_neox", "gemma2", "phi3", "opt", "gptj", "bert"]
LAYER = 1
_EXPRESSION = re.compile(
    r"^(?P<path>[\w.\[\]{}]+)\.(?P<io>input|output)(?:\[(?P<item>\d)\])?"
    r"(?:\[\.\.\., (?P<start>\d+):(?P<stop>\d+)\])?(?: \+ (?P<plus>[\w.\[\]{}]+)\.input)?$"
)


@functools.cache
def models(family: str):
    model, tok = nv.models.tiny(family, seed=0, attn_implementation="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masked = family == "bert"  # LanguageModel is for causal models; NNsight wraps any module
        lm = nnsight.NNsight(model) if masked else nnsight.LanguageModel(model, tokenizer=tok)
    return model, tok, lm


def ids(tok, text: str) -> torch.Tensor:
    return tok(text, return_tensors="pt")["input_ids"]


def module(lm, path: str, layer: int = LAYER):
    """`model.layers[{l}].mlp` on the nnsight model."""
    node = lm
    for name, index in re.findall(r"(\w+)(?:\[([^\]]+)\])?", path.replace("{l}", str(layer))):
        node = getattr(node, name)
        if index:
            node = node[int(index)]
    return node


def read(lm, tok, expression: str, prompt: str) -> torch.Tensor:
    """What nnsight reads for one row's expression on a prompt: (positions, units…)."""
    code, _, note = expression.partition("; ")
    m = _EXPRESSION.match(code)
    assert m, f"the table's nnsight path {code!r} is not of a known form"
    with lm.trace(ids(tok, prompt)):
        if m["plus"]:
            plus = module(lm, m["plus"]).input.save()
        value = getattr(module(lm, m["path"]), m["io"])
        if m["item"]:
            value = value[int(m["item"])]
        value = value.save()
    if note.startswith("batch and positions flattened"):
        note = ""
    else:
        value = value[0]
    if m["plus"]:
        value = value + plus[0]
    if m["start"]:
        value = value[..., int(m["start"]) : int(m["stop"])]
    if note.startswith("split into"):
        value = value.unflatten(-1, (int(note.split()[2]), -1))
    elif note.startswith("the last dimension as"):
        heads, part = re.search(r"\((\d+) heads, 3, head_dim\), part (\d)", note).groups()
        value = value.unflatten(-1, (int(heads), 3, -1))[..., int(part), :]
        value = value.flatten(-2) if note.endswith("flattened") else value
    elif note.startswith("eager attention"):  # (heads, query, key) → nbvene's (query, head, key)
        value = value.transpose(0, 1)
    return value


@pytest.mark.parametrize("family", FAMILIES)
def test_every_nnsight_path_in_the_definition_table_reads_the_components_tensor(family):
    model, tok, lm = models(family)
    sites = nv.SiteMap(model)
    base = f"{BASE} [MASK]." if family == "bert" else BASE
    for row in definitions(model):
        if row.nnsight is None:
            continue
        c = sites.resolve(row.component)
        heads = " head=*" if sites.heads(c) is not None else ""
        spec = f'base: "{base}"\ncollect: {row.component} layer={LAYER} pos=*{heads}'
        ours = nv.run(spec, model=model, tokenizer=tok).values
        theirs = read(lm, tok, row.nnsight, base)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0, msg=row.component)


def run(model, tok, body: str, **kwargs):
    spec = f'base: "{BASE}"\nsource: "{SOURCE}"\n{body}\n{METRIC}'
    return nv.run(spec, model=model, tokenizer=tok, **kwargs)


def logit_diff(tok, logits) -> torch.Tensor:
    paris, rome = (tok.encode(w, add_special_tokens=False)[0] for w in (" Paris", " Rome"))
    return logits[0, -1, paris] - logits[0, -1, rome]


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_nnsight_patch_and_add_equal_nbvenes(family):
    model, tok, lm = models(family)
    sites = nv.SiteMap(model)
    blocks = sites.family.blocks
    part = sites.parts["head_attention_value_output"].path
    o_proj = f"{blocks}[{{l}}].{part}"
    head_dim = sites.shape.head_dim
    vector = torch.randn(sites.shape.hidden, generator=torch.Generator().manual_seed(2))

    with lm.trace(ids(tok, SOURCE)):
        clean_block = module(lm, f"{blocks}[0]").output.save()
        clean_z = module(lm, o_proj).input.save()
    with lm.trace(ids(tok, BASE)):
        module(lm, f"{blocks}[0]").output[:, -1] = clean_block[:, -1]
        patched = lm.output.logits.save()
    with lm.trace(ids(tok, BASE)):
        z = module(lm, o_proj).input
        z[:, -1, 2 * head_dim : 3 * head_dim] = clean_z[:, -1, 2 * head_dim : 3 * head_dim]
        head_patched = lm.output.logits.save()
    with lm.trace(ids(tok, BASE)):
        module(lm, f"{blocks}[0]").output[:, -1] += vector
        added = lm.output.logits.save()

    ours = run(model, tok, "patch: block_output layer=0 pos=-1").values
    torch.testing.assert_close(ours, logit_diff(tok, patched), atol=1e-5, rtol=0)
    ours = run(model, tok, f"patch: z layer={LAYER} head=2 pos=-1").values
    torch.testing.assert_close(ours, logit_diff(tok, head_patched), atol=1e-5, rtol=0)
    spec = f'base: "{BASE}"\nadd: block_output layer=0 pos=-1 by {{v}}\n{METRIC}'
    ours = nv.run(spec, model=model, tokenizer=tok, namespace={"v": vector}).values
    torch.testing.assert_close(ours, logit_diff(tok, added), atol=1e-5, rtol=0)


EMBEDDINGS = {
    "llama": "model.embed_tokens",
    "gpt2": "transformer.wte",
    "gemma": "model.embed_tokens",
    "gpt_neox": "gpt_neox.embed_in",
}


@pytest.mark.parametrize("family", list(EMBEDDINGS))
def test_a_rome_trace_in_nnsight_with_sigma_by_hand_equals_noise_3_sigma(family):
    """ROME's causal trace by hand: σ is the standard deviation of the embeddings the model
    consumes (Gemma's are scaled by √d_model inside the module), 3σ × the seeded draws is added
    to the subject's embeddings, and one clean block output is restored."""
    model, tok, lm = models(family)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        sigma = embed(torch.arange(embed.weight.shape[0])[None])[0].float().std()
    prompt = SOURCE
    enc = tok(prompt, return_offsets_mapping=True)
    start, end = prompt.index("Eiffel Tower"), prompt.index("Eiffel Tower") + len("Eiffel Tower")
    subject = [i for i, (a, b) in enumerate(enc.offset_mapping) if a < end and b > start]
    generator = torch.Generator().manual_seed(5)
    draws = torch.randn((len(subject), embed.weight.shape[1]), generator=generator)
    restored = subject[-1]
    blocks = nv.SiteMap(model).family.blocks
    paris = tok.encode(" Paris", add_special_tokens=False)[0]

    with lm.trace(ids(tok, prompt)):
        clean = module(lm, f"{blocks}[0]").output.save()
    with lm.trace(ids(tok, prompt)):
        module(lm, EMBEDDINGS[family]).output[:, subject] += 3 * sigma * draws
        module(lm, f"{blocks}[0]").output[:, restored] = clean[:, restored]
        logits = lm.output.logits.save()
    theirs = logits[0, -1].softmax(-1)[paris]

    spec = (
        f'base: "{prompt}"\ncorrupt: noise 3σ on "Eiffel Tower" seed=5\n'
        f'restore: block_output layer=0 pos={restored}\nmetric: p(" Paris")'
    )
    ours = nv.run(spec, model=model, tokenizer=tok)
    torch.testing.assert_close(ours.values, theirs, atol=1e-6, rtol=0)
    assert abs(float(ours.values) - float(ours.corrupted)) > 0, "the restore changes the run"

    # the same on transformers' default SDPA attention, rows starting at their layer or not;
    # and what collect: sees at the embeddings' output is the noised embeddings
    sdpa, _ = nv.models.tiny(family, seed=0)
    sdpa.set_attn_implementation("sdpa")
    for start_at_layer in (True, False):
        got = nv.run(spec, model=sdpa, tokenizer=tok, start_at_layer=start_at_layer)
        torch.testing.assert_close(got.values, theirs, atol=1e-5, rtol=0)
    with lm.trace(ids(tok, prompt)):
        noised = module(lm, EMBEDDINGS[family]).output
        noised[:, subject] += 3 * sigma * draws
        noised = noised.save()
    collect = f'base: "{prompt}"\ncorrupt: noise 3σ on "Eiffel Tower" seed=5\n'
    collect += f"collect: {EMBEDDINGS[family]}.output pos=*"
    got = nv.run(collect, model=sdpa, tokenizer=tok).values
    torch.testing.assert_close(got, noised[0], atol=1e-5, rtol=0)
