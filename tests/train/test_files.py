"""Save, load, share: a folder of JSON and safetensors, read back bit for bit, checked against
the model it is loaded onto."""

import json
from pathlib import Path

import pytest
import torch
from planted import WIDTH, pairs, planted, spec, train
from safetensors import safe_open
from torch import nn

import nbvene as nv
from nbvene.train import load_interventions

RUN = "base: {base}\nsource: {source}\npatch: hidden.output via {das}\nmetric: logit(3)"


def test_the_folder_holds_json_and_safetensors(das, tmp_path):
    folder = das.save(tmp_path / "adder-das")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "interventions.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "nbvene-interventions" and config["format_version"] == 1
    assert config["nbvene"] == nv.__version__
    assert "hidden.output via rotated(k=1)" in config["spec"]
    assert config["model"]["name"] == "Adder"
    (entry,) = config["interventions"]
    assert entry["statement"] == "patch: hidden.output via rotated(k=1)"
    assert entry["site"] == "hidden.output" and entry["component"] == "hidden.output"
    assert entry["type"] == "rotated" and entry["args"] == {"k": 1, "seed": 0}
    assert entry["width"] == WIDTH
    assert config["metrics"]["iia"] == pytest.approx(das.iia)
    assert len(config["history"]) == len(das.history)
    with safe_open(str(folder / "interventions.safetensors"), framework="pt") as f:
        keys = set(f.keys())
        shapes = {k: list(f.get_tensor(k).shape) for k in keys}
    assert keys == {f"0.{k}" for k in entry["tensors"]}
    assert shapes == {f"0.{k}": v["shape"] for k, v in entry["tensors"].items()}
    # no pickle anywhere: safetensors starts with a little-endian header length, then JSON
    raw = (folder / "interventions.safetensors").read_bytes()
    assert raw[8:9] == b"{" and b"\x80\x04" not in raw[:2]


def test_load_gives_the_same_outputs_bit_for_bit(adder, das, test_data, tmp_path):
    model, _ = adder
    folder = das.save(tmp_path / "adder-das")
    again = load_interventions(folder, model=model)
    assert again.evaluate(namespace=test_data.namespace()) == das.evaluate(
        namespace=test_data.namespace()
    )
    assert torch.equal(again.basis, das.basis)
    base, source = torch.randn(7, WIDTH), torch.randn(7, WIDTH)
    assert torch.equal(again(base, source), das(base, source))
    namespace = {"base": test_data.base, "source": test_data.source}
    loaded = nv.run(RUN, model=model, namespace={**namespace, "das": again})
    trained = nv.run(RUN, model=model, namespace={**namespace, "das": das})
    assert torch.equal(loaded.values, trained.values)
    assert again.iia == das.iia and again.history == das.history


def test_the_old_name_load_warns_and_loads_the_same(das, adder, tmp_path):
    from nbvene.train import load

    folder = das.save(tmp_path / "adder-das")
    with pytest.warns(DeprecationWarning, match="load_interventions"):
        again = load(folder, model=adder[0])
    assert torch.equal(again.basis, das.basis)


def test_every_form_round_trips(adder, tmp_path):
    model, _ = adder
    data = pairs(100, seed=12)
    base, source = torch.randn(3, WIDTH), torch.randn(3, WIDTH)
    for form in (
        "low_rank_rotated(k=2)",
        "boundless()",
        "sigmoid_mask()",
        "loreft(k=2)",
        "low_rank_add(k=3)",
        "interchange(dims=[2, 5])",
    ):
        trained = train(form, model, data, epochs=0 if form.startswith("interchange") else 1)
        again = load_interventions(trained.save(tmp_path / form.split("(")[0]), model=model)
        assert torch.equal(again(base, source), trained(base, source)), form
        assert torch.equal(again.basis, trained.basis), form


def test_loading_onto_a_mismatched_model_fails_clearly(das, tmp_path):
    folder = das.save(tmp_path / "adder-das")
    narrow, _ = planted(width=12)
    with pytest.raises(nv.NbveneError) as info:
        load_interventions(folder, model=narrow)
    assert "width 16" in info.value.message and "has 12" in info.value.message
    assert "'Adder'" in info.value.message

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(20, 16)

    with pytest.raises(nv.NbveneError, match=r"no site for .patch: hidden\.output") as info:
        load_interventions(folder, model=Other())
    assert "no module 'hidden'" in info.value.message
    with pytest.raises(nv.NbveneError, match=r"has no config\.json"):
        load_interventions(tmp_path, model=narrow)


def test_your_own_module_is_loaded_into_a_fresh_one(adder, tmp_path):
    model, _ = adder
    data = pairs(100, seed=13)

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(WIDTH))

        def forward(self, base, source):
            return base + self.gain * (source - base)

    trained = nv.train(
        spec("{mine}"),
        model=model,
        namespace={**data.namespace(), "mine": Scale()},
        epochs=1,
        progress=False,
    )
    folder = trained.save(tmp_path / "mine")
    config = json.loads((folder / "config.json").read_text())
    assert config["interventions"][0]["type"] == "module"
    with pytest.raises(nv.NbveneError, match="your own intervention"):
        load_interventions(folder, model=model)
    fresh = Scale()
    again = load_interventions(folder, model=model, namespace={"mine": fresh})
    assert again.intervention is fresh
    assert torch.equal(fresh.gain, trained.intervention.gain)


def test_hub_paths_read_a_snapshot_folder(das, tmp_path, monkeypatch):
    """hf://owner/name[/sub][@rev] goes through huggingface_hub.snapshot_download (replaced
    here: nothing is downloaded in tests)."""
    import huggingface_hub

    das.save(tmp_path / "snapshot" / "adder-das")
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    model, _ = planted()
    again = load_interventions("hf://someone/interventions/adder-das@v1", model=model)
    assert calls == [("someone/interventions", "v1", ["adder-das/*"])]
    assert torch.equal(again.basis, das.basis)
    with pytest.raises(nv.NbveneError, match="names no repository"):
        load_interventions("hf://someone", model=model)


def test_push_to_hub_uploads_the_saved_folder(das, tmp_path, monkeypatch):
    """push_to_hub goes through huggingface_hub.HfApi (replaced here: nothing is uploaded), and
    what it uploads loads back through hf://."""
    import shutil

    import huggingface_hub

    hub = tmp_path / "hub"
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, *, repo_id, folder_path, path_in_repo, revision, commit_message):
            calls.append(("upload", repo_id, path_in_repo, revision))
            assert sorted(p.name for p in Path(folder_path).iterdir()) == [
                "config.json",
                "interventions.safetensors",
            ]
            shutil.copytree(folder_path, hub / (path_in_repo or ""), dirs_exist_ok=True)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(hub))
    path = das.push_to_hub("me/adder", subfolder="das", revision="main", token="t")
    assert path == "hf://me/adder/das@main"
    assert calls == [
        ("token", "t"),
        ("create", "me/adder", None, True),
        ("upload", "me/adder", "das", "main"),
    ]
    model, _ = planted()
    assert torch.equal(load_interventions(path, model=model).basis, das.basis)


def test_named_sites_are_saved_with_it(adder, tmp_path):
    model, _ = adder
    data = pairs(100, seed=14)
    text = "base: {base}\nsource: {source}\npatch: middle via rotated(k=1)\nlabel: {label}"
    sites = {"middle": "hidden.output"}
    trained = nv.train(
        text, model=model, namespace=data.namespace(), sites=sites, epochs=1, progress=False
    )
    again = load_interventions(trained.save(tmp_path / "named"), model=model)  # no sites= needed
    assert again.sites == {"middle": "hidden.output"}
    assert again.evaluate(namespace=data.namespace()) == trained.evaluate(
        namespace=data.namespace()
    )
