"""`via interchange(dims={dims})` with one list of units per base example, against a hand-written
patch of tiny GPT-2's block output: each example swaps exactly its own units, not the union of
them all (pyvene merges per-example subspaces across the batch)."""

from __future__ import annotations

import pytest
import torch

import nbvene as nv

BASE = [
    "The Colosseum is located in the city of",
    "The Louvre is in the city of",
    "John thinks that Mary is happy and kind to",
]
SOURCE = "When John and Mary went to the store, John gave a bottle to"
DIMS = [[0], [5, 17], [3, 40, 63]]
SPEC = f"""
base:   {{base}}
source: "{SOURCE}"
patch:  block_output layer=1 pos=-1 via interchange(dims={{dims}})
metric: logit(" Paris")
"""


@pytest.fixture(scope="module")
def tiny():
    return nv.models.tiny("gpt2")


def oracle(model, tok, base: str, dims: list[int]) -> float:
    """Block 1's output at the last token: `dims` from the source run, the rest from the base."""
    block, kept = model.transformer.h[1], {}

    def hidden(out):  # a tensor, or a tuple led by it, depending on the transformers version
        return out[0] if isinstance(out, tuple) else out

    def keep(module, args, out):
        kept["source"] = hidden(out)[0, -1].clone()

    def patch(module, args, out):
        hidden(out)[0, -1, dims] = kept["source"][dims]

    with torch.no_grad():
        handle = block.register_forward_hook(keep)
        model(**tok(SOURCE, return_tensors="pt"))
        handle.remove()
        handle = block.register_forward_hook(patch)
        logits = model(**tok(base, return_tensors="pt")).logits
        handle.remove()
    return logits[0, -1, tok.encode(" Paris")[0]].item()


def test_each_example_swaps_its_own_dims(tiny):
    model, tok = tiny
    res = nv.run(SPEC, model=model, tokenizer=tok, namespace=dict(base=BASE, dims=DIMS))
    assert res.values.shape == (3,)
    expected = torch.tensor([oracle(model, tok, b, d) for b, d in zip(BASE, DIMS, strict=True)])
    torch.testing.assert_close(res.values, expected, atol=1e-5, rtol=0)
    # the same as the single-example run with a flat dims list
    for b, d, got in zip(BASE, DIMS, res.values, strict=True):
        one = nv.run(
            SPEC.replace("{dims}", str(d)), model=model, tokenizer=tok, namespace=dict(base=b)
        )
        assert abs(one.values.item() - got.item()) < 1e-5
    # and not what a merged subspace (pyvene's) gives
    merged = sorted({u for d in DIMS for u in d})
    wrong = torch.tensor([oracle(model, tok, b, merged) for b in BASE])
    assert (res.values - wrong).abs().min() > 1e-4


def test_wrong_number_of_lists(tiny):
    model, tok = tiny
    with pytest.raises(nv.NbveneError, match="2 lists of units for 3 base prompts") as e:
        nv.run(SPEC, model=model, tokenizer=tok, namespace=dict(base=BASE, dims=DIMS[:2]))
    assert e.value.line == 4


def test_out_of_range_dims(tiny):
    model, tok = tiny
    with pytest.raises(nv.NbveneError, match=r"example 2: dims \[3, 64\] are not distinct"):
        nv.run(
            SPEC, model=model, tokenizer=tok, namespace=dict(base=BASE, dims=[[0], [1], [3, 64]])
        )
    assert not any(m._forward_hooks for m in model.modules())


def test_mixed_integers_and_lists(tiny):
    model, tok = tiny
    with pytest.raises(nv.NbveneError, match="mixes integers and lists"):
        nv.run(SPEC, model=model, tokenizer=tok, namespace=dict(base=BASE, dims=[[0], 1, [2]]))


def test_config_round_trip():
    from nbvene.interventions.trainable import build

    made = build("interchange", {"dims": DIMS})
    again = build("interchange", made.config())
    assert again.per_example and again.dims == made.dims
    assert build("interchange", {"dims": torch.tensor([[1, 2], [3, 4]])}).dims == ((1, 2), (3, 4))


def test_as_a_module_in_the_namespace(tiny):
    """`via {f}` with a per-example Interchange object: the same numbers, the same checks."""
    from nbvene.interventions.trainable import Interchange

    model, tok = tiny
    spec = SPEC.replace("interchange(dims={dims})", "{f}")
    res = nv.run(
        spec, model=model, tokenizer=tok, namespace=dict(base=BASE, f=Interchange(dims=DIMS))
    )
    by_call = nv.run(SPEC, model=model, tokenizer=tok, namespace=dict(base=BASE, dims=DIMS))
    torch.testing.assert_close(res.values, by_call.values, atol=0, rtol=0)
    with pytest.raises(nv.NbveneError, match="3 lists of units for 2 base prompts"):
        nv.run(
            spec,
            model=model,
            tokenizer=tok,
            namespace=dict(base=BASE[:2], f=Interchange(dims=DIMS)),
        )
