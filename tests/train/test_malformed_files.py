"""load_interventions refuses malformed folders before it builds anything: each case is an
NbveneError that names the file (or folder) at fault, never a raw SafetensorError, KeyError,
JSONDecodeError, RecursionError or a 360 GB allocation; and good folders still load."""

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save

import nbvene as nv
from nbvene.train import load_interventions

SPEC = (
    "base: {base}\nsource: {source}\n"
    "patch: z layer=0 head=1 pos=-1 via rotated(k=1)\nlabel: {label}"
)
CONFIG, TENSORS = "config.json", "interventions.safetensors"
ORIGINAL = "0.rotation.parametrizations.weight.original"


@pytest.fixture(scope="module")
def llama():
    return nv.models.tiny("llama")


@pytest.fixture(scope="module")
def good(llama, tmp_path_factory):
    """A head-level rotation (z, head 1: units of width 16) saved once."""
    model, tok = llama
    examples = dict(
        base=["The cat is", "A dog is"], source=["The dog is", "A cat is"], label=[5, 7]
    )
    trained = nv.train(
        SPEC,
        model=model,
        tokenizer=tok,
        namespace=examples,
        epochs=1,
        held_out=None,
        progress=False,
    )
    return trained.save(tmp_path_factory.mktemp("good") / "z-das")


# --- ways to spoil a folder ----------------------------------------------------------------------


def config_of(folder: Path) -> dict:
    return json.loads((folder / CONFIG).read_text())


def with_config(change):
    def spoil(folder: Path) -> None:
        config = config_of(folder)
        change(config)
        (folder / CONFIG).write_text(json.dumps(config))

    return spoil


def entry(change):
    return with_config(lambda c: change(c["interventions"][0]))


def config_text(text: str | bytes):
    def spoil(folder: Path) -> None:
        path = folder / CONFIG
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return spoil


def raw_safetensors(header: dict, data: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def tensors(change):
    """Rewrite the tensors (a dict) and keep the config as it is."""

    def spoil(folder: Path) -> None:
        found = load_file(str(folder / TENSORS))
        change(found)
        (folder / TENSORS).write_bytes(save(found))

    return spoil


def tensors_bytes(change):
    def spoil(folder: Path) -> None:
        path = folder / TENSORS
        path.write_bytes(change(path.read_bytes()))

    return spoil


def both(*spoils):
    def spoil(folder: Path) -> None:
        for s in spoils:
            s(folder)

    return spoil


def remove(name):
    return lambda folder: (folder / name).unlink()


def directory_for(name):
    def spoil(folder: Path) -> None:
        (folder / name).unlink()
        (folder / name).mkdir()

    return spoil


def emptied(folder: Path) -> None:
    for p in folder.iterdir():
        p.unlink()


def int64(found: dict) -> None:
    found[ORIGINAL] = found[ORIGINAL].to(torch.int64)


def set_value(value):
    def change(found: dict) -> None:
        found[ORIGINAL] = found[ORIGINAL].clone()
        found[ORIGINAL][0, 0] = value

    return change


def declared_shape(shape):
    def change(e: dict) -> None:
        for about in e["tensors"].values():
            about["shape"] = shape

    return change


def half(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def header_says(change):
    """Rewrite the safetensors header (its JSON), keeping the data bytes."""

    def spoil(raw: bytes) -> bytes:
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8 : 8 + n])
        change(header)
        return raw_safetensors(header, raw[8 + n :])

    return spoil


def offsets_past_the_end(header: dict) -> None:
    header[ORIGINAL]["data_offsets"][1] += 10**6


CASES = {
    # the folder and its two files
    "empty folder": (emptied, "z-das"),
    "config.json missing": (remove(CONFIG), "has no config.json"),
    "config.json is a directory": (directory_for(CONFIG), CONFIG),
    "tensors file missing": (remove(TENSORS), TENSORS),
    "tensors file is a directory": (directory_for(TENSORS), TENSORS),
    # config.json
    "config not JSON": (config_text("{'spec': nope"), CONFIG),
    "config truncated": (lambda f: config_text((f / CONFIG).read_text()[:200])(f), CONFIG),
    "config not UTF-8": (config_text(b"\xff\xfe{\x00}"), CONFIG),
    "config empty": (config_text(""), CONFIG),
    "config a list": (config_text("[1, 2, 3]"), CONFIG),
    "config deeply nested": (config_text("[" * 100_000 + "]" * 100_000), CONFIG),
    "missing spec": (with_config(lambda c: c.pop("spec")), CONFIG),
    "spec not text": (with_config(lambda c: c.update(spec=42)), CONFIG),
    "spec does not parse": (with_config(lambda c: c.update(spec="patch: (((")), CONFIG),
    "unknown format": (with_config(lambda c: c.update(format="pyvene")), CONFIG),
    "unknown version": (with_config(lambda c: c.update(format_version=99)), CONFIG),
    "version as text": (with_config(lambda c: c.update(format_version="1")), CONFIG),
    "interventions not a list": (with_config(lambda c: c.update(interventions={})), CONFIG),
    "intervention not an object": (with_config(lambda c: c.update(interventions=[7])), CONFIG),
    "metrics a list": (with_config(lambda c: c.update(metrics=[0.5])), CONFIG),
    "metric as text": (with_config(lambda c: c["metrics"].update(iia="high")), CONFIG),
    "history not a list": (with_config(lambda c: c.update(history=5)), CONFIG),
    "sites not an object": (with_config(lambda c: c.update(sites=["z"])), CONFIG),
    "huge width on a head-level site": (entry(lambda e: e.update(width=300_000)), CONFIG),
    "width as text": (entry(lambda e: e.update(width="16")), CONFIG),
    "width missing": (entry(lambda e: e.pop("width")), CONFIG),
    "args of the wrong type": (entry(lambda e: e.update(args={"k": "one"})), CONFIG),
    "args larger than the width": (entry(lambda e: e.update(args={"k": 17, "seed": 0})), CONFIG),
    "args that do not build": (
        entry(lambda e: e.update(type="interchange", args={"dims": [99]})),
        CONFIG,
    ),
    "unknown intervention type": (entry(lambda e: e.update(type="telepathy")), CONFIG),
    "name not in the spec": (entry(lambda e: e.update(name="nobody")), CONFIG),
    "index missing": (entry(lambda e: e.pop("index")), CONFIG),
    "tensors not an object": (entry(lambda e: e.update(tensors=[1])), CONFIG),
    "declared shape differs": (entry(declared_shape([16, 8])), TENSORS),
    "declared shape narrower than the width": (entry(declared_shape([8, 8])), CONFIG),
    "declared dtype differs": (
        entry(lambda e: [a.update(dtype="float16") for a in e["tensors"].values()]),
        TENSORS,
    ),
    "shape and width both small": (
        both(
            entry(declared_shape([8, 8])),
            tensors(lambda t: t.update({k: v[:8, :8].contiguous() for k, v in t.items()})),
        ),
        CONFIG,
    ),
    "narrower than the model's heads, consistently": (
        both(
            entry(declared_shape([8, 8])),
            entry(lambda e: e.update(width=8)),
            tensors(lambda t: t.update({k: v[:8, :8].contiguous() for k, v in t.items()})),
        ),
        "trained on units of width 8",
    ),
    # interventions.safetensors
    "tensors empty file": (tensors_bytes(lambda raw: b""), TENSORS),
    "tensors truncated": (tensors_bytes(half), TENSORS),
    "tensors not safetensors": (tensors_bytes(lambda raw: b"PK\x03\x04 a zip file" * 20), TENSORS),
    "tensors header length huge": (tensors_bytes(lambda raw: b"\xff" * 8 + raw[8:]), TENSORS),
    "tensors header not an object": (tensors_bytes(lambda raw: raw_safetensors([], b"")), TENSORS),
    "tensors header offsets past the end": (
        tensors_bytes(header_says(offsets_past_the_end)),
        TENSORS,
    ),
    "tensors header unknown dtype": (
        tensors_bytes(header_says(lambda h: h[ORIGINAL].update(dtype="F128"))),
        TENSORS,
    ),
    "missing tensor": (tensors(lambda t: t.pop(ORIGINAL)), TENSORS),
    "extra tensor": (tensors(lambda t: t.update({"0.extra": torch.zeros(3)})), TENSORS),
    "int64 tensor": (tensors(int64), TENSORS),
    "int64 tensor, declared": (
        both(tensors(int64), entry(lambda e: e["tensors"][ORIGINAL[2:]].update(dtype="int64"))),
        TENSORS,
    ),
    "NaN values": (tensors(set_value(float("nan"))), TENSORS),
    "infinite values": (tensors(set_value(float("inf"))), TENSORS),
}


def spoiled(good: Path, tmp_path: Path, spoil) -> Path:
    folder = tmp_path / "z-das"
    shutil.copytree(good, folder)
    spoil(folder)
    return folder


def test_the_table_is_large():
    assert len(CASES) >= 29


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_folder_is_refused_naming_its_file(case, good, llama, tmp_path):
    spoil, named = CASES[case]
    folder = spoiled(good, tmp_path, spoil)
    model, tok = llama
    with pytest.raises(nv.NbveneError) as info:
        load_interventions(folder, model=model, tokenizer=tok)
    assert named in str(info.value), str(info.value)


def test_a_folder_that_is_a_file_or_missing(good, llama, tmp_path):
    model, _ = llama
    with pytest.raises(nv.NbveneError, match="does not exist"):
        load_interventions(tmp_path / "nowhere", model=model)
    with pytest.raises(nv.NbveneError, match="is not a folder") as info:
        load_interventions(good / TENSORS, model=model)
    assert TENSORS in str(info.value)


def test_the_good_folder_still_loads_and_runs_the_same(good, llama):
    model, tok = llama
    again = load_interventions(good, model=model, tokenizer=tok)
    base, source = torch.randn(3, 16), torch.randn(3, 16)
    assert torch.equal(again(base, source), load_interventions(good, model=model)(base, source))
    assert again.intervention.width == 16


class Scale(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(width))

    def forward(self, base, source):
        return base + self.gain * (source - base)


def test_your_own_module_of_another_shape_is_refused_naming_the_file(tmp_path):
    model = torch.nn.Sequential()
    model.hidden = torch.nn.Linear(4, 4)
    examples = dict(base=torch.randn(8, 4), source=torch.randn(8, 4), label=torch.zeros(8).long())
    trained = nv.train(
        "base: {base}\nsource: {source}\npatch: hidden.output via {mine}\nlabel: {label}",
        model=model,
        namespace={**examples, "mine": Scale(4)},
        epochs=1,
        held_out=None,
        progress=False,
    )
    folder = trained.save(tmp_path / "mine")
    with pytest.raises(nv.NbveneError, match="do not fit the intervention") as info:
        load_interventions(folder, model=model, namespace={"mine": Scale(3)})
    assert TENSORS in str(info.value)
    again = load_interventions(folder, model=model, namespace={"mine": Scale(4)})
    assert torch.equal(again.intervention.gain, trained.intervention.gain)
