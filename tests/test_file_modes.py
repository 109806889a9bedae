"""Files nbvene writes get the user's umask (0644 under umask 022, 0600 under 077), like any
other tool's, and are written whole (no temporary file left beside them)."""

import os
import stat

import pytest
import torch

import nbvene as nv


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_saved_vector_gets_the_umask(umask, tmp_path):
    path = nv.Vector(torch.ones(8), site="block_output", layer=0).save(tmp_path / "v.safetensors")
    assert mode(path) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.safetensors"]
    again = nv.Vector(torch.zeros(8), site="block_output", layer=0).save(path)  # over the old one
    assert mode(again) == 0o666 & ~umask and torch.equal(
        nv.Vector.load(path).values, torch.zeros(8)
    )


def test_a_saved_training_gets_the_umask(umask, tmp_path):
    model = torch.nn.Sequential()
    model.hidden = torch.nn.Linear(4, 4)
    examples = dict(base=torch.randn(8, 4), source=torch.randn(8, 4), label=torch.zeros(8).long())
    trained = nv.train(
        "base: {base}\nsource: {source}\npatch: hidden.output via rotated(k=1)\nlabel: {label}",
        model=model,
        namespace=examples,
        epochs=1,
        held_out=None,
        progress=False,
    )
    folder = trained.save(tmp_path / "das")
    for name in ("config.json", "interventions.safetensors"):
        assert mode(folder / name) == 0o666 & ~umask, name
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "interventions.safetensors"]


def test_a_saved_page_gets_the_umask(umask, tmp_path):
    model, tok = nv.models.tiny("gpt2")
    res = nv.run(
        'base: "The Eiffel Tower is in"\nzero: block_output layer=* pos=-1\nmetric: p(" Paris")',
        model=model,
        tokenizer=tok,
    )
    res.save_html(tmp_path / "res.html")
    assert mode(tmp_path / "res.html") == 0o666 & ~umask
    assert (tmp_path / "res.html").read_text().startswith("<!")
