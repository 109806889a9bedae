"""`nv.path_patch` against path patching written out by hand (Wang et al. 2022): sender head
outputs from the source run, every other head frozen at its base value, receiver inputs recorded
in that run, then the base run with only the receivers' inputs patched."""

from __future__ import annotations

import pytest
import torch

import nbvene as nv

BASE = "When John and Mary went to the store, John gave a bottle to"
SOURCE = "When John and Mary went to the store, Mary gave a bottle to"
METRIC = 'logit_diff(" Mary", " John")'


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request):
    # larger weights than the default init, so that heads' effects are well above float noise
    return nv.models.tiny(request.param, layers=3, initializer_range=0.3)


def attention(model, layer: int):
    block = (model.transformer.h if hasattr(model, "transformer") else model.model.layers)[layer]
    return block.attn if hasattr(block, "attn") else block.self_attn


def z_module(model, layer: int):
    """Its input is the heads' outputs, concatenated (head h: columns h·d..(h+1)·d)."""
    a = attention(model, layer)
    return a.c_proj if hasattr(a, "c_proj") else a.o_proj


def q_module(model, layer: int):
    """Its output holds the queries first, concatenated by head (GPT-2's c_attn: then k, v)."""
    a = attention(model, layer)
    return a.c_attn if hasattr(a, "c_attn") else a.q_proj


def oracle(model, base, source, sender: tuple[int, int], receivers, *, freeze=True):
    """Logits at the last token, path patching from `sender` (layer, head) to the queries of
    `receivers` [(layer, head)] at the last position, with plain hooks."""
    n_layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    d = model.config.hidden_size // heads
    cols = lambda h: slice(h * d, (h + 1) * d)  # noqa: E731
    handles = []

    def forward(ids):
        try:
            with torch.no_grad():
                return model(input_ids=ids).logits[0, -1]
        finally:
            for h in handles:
                h.remove()
            handles.clear()

    def record_z(store):
        for layer in range(n_layers):
            hook = lambda m, args, layer=layer: store.__setitem__(layer, args[0].clone())  # noqa: E731
            handles.append(z_module(model, layer).register_forward_pre_hook(hook))

    z_source, z_base = {}, {}
    record_z(z_source)
    forward(source)
    record_z(z_base)
    forward(base)

    # the path run: the base, senders from the source, every other head frozen at the base
    def set_z(layer):
        def hook(module, args):
            z = z_base[layer].clone() if freeze else args[0].clone()
            if layer == sender[0]:
                z[..., cols(sender[1])] = z_source[layer][..., cols(sender[1])]
            return (z, *args[1:])

        return hook

    for layer in range(n_layers):
        handles.append(z_module(model, layer).register_forward_pre_hook(set_z(layer)))
    queries = {}
    for layer in {r[0] for r in receivers}:
        hook = lambda m, a, out, layer=layer: queries.__setitem__(layer, out.clone())  # noqa: E731
        handles.append(q_module(model, layer).register_forward_hook(hook))
    forward(base)

    # the base, with only the receivers' queries at the last position from the path run
    def set_q(layer):
        def hook(module, args, out):
            out = out.clone()
            for r_layer, head in receivers:
                if r_layer == layer:
                    out[:, -1, cols(head)] = queries[layer][:, -1, cols(head)]
            return out

        return hook

    for layer in {r[0] for r in receivers}:
        handles.append(q_module(model, layer).register_forward_hook(set_q(layer)))
    return forward(base)


def ids(tok, text):
    return tok(text, return_tensors="pt")["input_ids"]


def logit_diff(tok, logits):
    mary, john = (tok.encode(w, add_special_tokens=False)[0] for w in (" Mary", " John"))
    return float(logits[mary] - logits[john])


def test_path_patching_matches_the_hand_written_oracle(tiny):
    model, tok = tiny
    heads = model.config.num_attention_heads
    res = nv.path_patch(
        BASE,
        SOURCE,
        senders="z layer=0..1 head=*",
        receivers="q layer=2 head=1 pos=-1",
        metric=METRIC,
        model=model,
        tokenizer=tok,
    )
    assert res.axes == ("layer", "head") and res.values.shape == (2, heads)
    base, source = ids(tok, BASE), ids(tok, SOURCE)
    expected = torch.tensor(
        [
            [
                logit_diff(tok, oracle(model, base, source, (layer, h), [(2, 1)]))
                for h in range(heads)
            ]
            for layer in range(2)
        ]
    )
    torch.testing.assert_close(res.values, expected, atol=1e-5, rtol=0)
    effects = (res.values - res.corrupted).abs()
    assert effects.max() > 1e-2  # the paths carry something, so the comparison means something

    # freezing matters: without it, a sender at layer 0 also acts through layer 1's heads
    unfrozen = nv.path_patch(
        BASE,
        SOURCE,
        senders="z layer=0 head=*",
        receivers="q layer=2 head=1 pos=-1",
        metric=METRIC,
        model=model,
        tokenizer=tok,
        freeze=(),
    )
    loose = [
        logit_diff(tok, oracle(model, base, source, (0, h), [(2, 1)], freeze=False))
        for h in range(heads)
    ]
    torch.testing.assert_close(unfrozen.values, torch.tensor(loose), atol=1e-5, rtol=0)
    assert (unfrozen.values - res.values[0]).abs().max() > 1e-4


def test_several_receivers_and_the_printed_spec(tiny):
    model, tok = tiny
    res = nv.path_patch(
        BASE,
        SOURCE,
        senders="z layer=1 head=2",
        receivers=["q layer=2 head=0 pos=-1", "q layer=2 head=3 pos=-1"],
        metric=METRIC,
        model=model,
        tokenizer=tok,
    )
    expected = oracle(model, ids(tok, BASE), ids(tok, SOURCE), (1, 2), [(2, 0), (2, 3)])
    assert abs(float(res.values) - logit_diff(tok, expected)) < 1e-5
    text = str(res.spec)
    assert "patch: z layer=1 head=2 from corrupt into path" in text
    assert text.count("from clean into path") == 3  # one frozen layer a line
    again = nv.run(text, model=model, tokenizer=tok, namespace={"base": BASE, "source": SOURCE})
    assert torch.equal(again.values, res.values)  # the spec runs as it prints


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"senders": "z layer=0 from s1"}, "is a statement body"),
        ({"receivers": "patch: q layer=1"}, "is a statement body"),
        ({"receivers": []}, "at least one receiver"),
        ({"senders": "z layre=0"}, "unknown key 'layre'"),
    ],
)
def test_path_patch_errors(kwargs, message):
    model, tok = nv.models.tiny("gpt2")
    args = {"senders": "z layer=0 head=*", "receivers": "q layer=1 head=0", **kwargs}
    with pytest.raises(nv.NbveneError, match=message):
        nv.path_patch(BASE, SOURCE, **args, metric=METRIC, model=model, tokenizer=tok)


def test_a_batch_of_prompts_gives_each_its_own_paths(tiny):
    model, tok = tiny
    bases = [BASE, BASE.replace("John", "Tom")]
    sources = [SOURCE, SOURCE.replace("John", "Tom")]
    args = dict(
        senders="z layer=1 head=*",
        receivers="q layer=2 head=1 pos=-1",
        metric=f"{METRIC} normalized",
        model=model,
        tokenizer=tok,
    )
    batch = nv.path_patch(bases, sources, **args)
    assert batch.axes == ("example", "head")
    for e in range(2):
        one = nv.path_patch(bases[e], sources[e], **args)
        torch.testing.assert_close(batch.values[e], one.values, atol=1e-4, rtol=0)
