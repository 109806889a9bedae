"""Vectors from prompts against hidden states read by hand (`output_hidden_states`: below the
last layer, block l's output is hidden_states[l + 1]); save/load round trip; bad input."""

import pytest
import torch

import nbvene as nv

KIND = ["You are kind.", "She was kind to me.", "What a kind person"]
CRUEL = ["You are cruel.", "She was cruel to me.", "What a cruel person"]


def last_hidden(model, tok, prompts, layer):
    out = []
    for p in prompts:
        ids = tok(p, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            h = model(input_ids=ids, output_hidden_states=True).hidden_states[layer + 1]
        out.append(h[0, -1])
    return torch.stack(out)


def test_mean_diff_is_the_difference_of_last_token_means(llama):
    model, tok = llama
    v = nv.vector(KIND, CRUEL, model=model, tokenizer=tok, layer=1)
    want = last_hidden(model, tok, KIND, 1).mean(0) - last_hidden(model, tok, CRUEL, 1).mean(0)
    torch.testing.assert_close(v.values, want, rtol=1e-5, atol=1e-5)
    assert (v.site, v.layer) == ("block_output", 1)
    assert v.provenance["method"] == "mean_diff"
    assert v.provenance["positive"] == KIND and v.provenance["negative"] == CRUEL
    assert not v.per_position


def test_pca_is_the_principal_direction_of_paired_differences(llama):
    model, tok = llama
    v = nv.vector(KIND, CRUEL, model=model, tokenizer=tok, layer=1, method="pca")
    diffs = last_hidden(model, tok, KIND, 1) - last_hidden(model, tok, CRUEL, 1)
    direction = v.values / v.values.norm()
    # no other direction carries more of the differences' energy
    energy = (diffs @ direction).pow(2).sum()
    for other in torch.randn(50, diffs.shape[1], generator=torch.Generator().manual_seed(0)):
        assert (diffs @ (other / other.norm())).pow(2).sum() <= energy + 1e-4
    # signed and scaled like the pairs: its length is their mean projection on it
    torch.testing.assert_close(v.values.norm(), (diffs @ direction).mean(), rtol=1e-4, atol=1e-5)


def test_diff_of_two_prompts_is_per_position_and_normalize_gives_unit_rows(llama):
    model, tok = llama
    v = nv.vector(
        "Paris is a city",
        "Rome is a city",
        model=model,
        tokenizer=tok,
        layer=0,
        method="diff",
        normalize=True,
    )
    assert v.per_position and v.values.shape == (5, model.config.hidden_size)
    torch.testing.assert_close(v.values.norm(dim=-1), torch.ones(5))
    assert v.provenance["normalized"] is True
    with pytest.raises(nv.NbveneError, match="subtracted position by position"):
        nv.vector("Paris is big", "Rome is old", model=model, tokenizer=tok, layer=0, method="diff")


def test_save_and_load_round_trip(llama, tmp_path):
    model, tok = llama
    v = nv.vector(KIND, CRUEL, model=model, tokenizer=tok, layer=1, normalize=True)
    path = v.save(tmp_path / "kind.safetensors")
    back = nv.Vector.load(path)
    assert torch.equal(back.values, v.values)
    assert (back.site, back.layer, back.model, back.provenance) == (
        v.site,
        v.layer,
        v.model,
        v.provenance,
    )
    # the file is safetensors with the description as JSON in its header: no pickle
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert '"method": "mean_diff"' in f.metadata()["nbvene_vector"]
    raw = tmp_path / "raw.safetensors"
    from safetensors.torch import save_file

    save_file({"values": v.values}, str(raw))
    with pytest.raises(nv.NbveneError, match="not an nbvene vector"):
        nv.Vector.load(raw)


def test_a_saved_vector_steers_like_the_one_made_in_the_spec(llama, tmp_path):
    model, tok = llama
    v = nv.vector(KIND, CRUEL, model=model, tokenizer=tok, layer=1)
    loaded = nv.Vector.load(v.save(tmp_path / "v.safetensors"))
    base = 'base: "I think that you are"\nmetric: logit_diff(" kind", " cruel")\n'
    made = nv.run(
        base + "steer: block_output layer=1 by mean_diff({k}, {c}) * 3",
        model=model,
        tokenizer=tok,
        namespace={"k": KIND, "c": CRUEL},
    )
    given = nv.run(
        base + "steer: block_output layer=1 by {v} * 3",
        model=model,
        tokenizer=tok,
        namespace={"v": loaded},
    )
    torch.testing.assert_close(made.values, given.values)
    with pytest.raises(nv.NbveneError, match="was made at block_output layer 1"):
        nv.run(
            base + "steer: block_output layer=2 by {v} * 3",
            model=model,
            tokenizer=tok,
            namespace={"v": loaded},
        )


def test_bad_vectors(llama):
    model, tok = llama
    with pytest.raises(nv.NbveneError, match="unknown method"):
        nv.vector(KIND, CRUEL, model=model, tokenizer=tok, layer=1, method="mean")
    with pytest.raises(nv.NbveneError, match="pca needs pairs"):
        nv.vector(KIND, CRUEL[:2], model=model, tokenizer=tok, layer=1, method="pca")
    with pytest.raises(nv.NbveneError, match="out of range"):
        nv.vector(KIND, CRUEL, model=model, tokenizer=tok, layer=3)
    with pytest.raises(nv.NbveneError, match="split by head"):
        nv.vector(KIND, CRUEL, model=model, tokenizer=tok, layer=1, site="z")
    with pytest.raises(nv.NbveneError, match="a Vector holds"):
        nv.Vector(torch.zeros(2, 3, 4), site="block_output")
