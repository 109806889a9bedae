"""nv.Vector.load refuses malformed files before reading their numbers: each case is an
NbveneError naming the file; good vectors still round-trip."""

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import nbvene as nv

KEY = "nbvene_vector"
ABOUT = {"version": 1, "site": "block_output", "layer": 1, "model": "tiny", "provenance": {}}


def vector_file(values=None, about=ABOUT, extra=None, metadata=None) -> bytes:
    tensors = {"values": torch.ones(64) if values is None else values, **(extra or {})}
    meta = metadata if metadata is not None else {KEY: json.dumps(about)}
    return save(tensors, metadata=meta)


def raw_safetensors(header, data: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


def described(**fields) -> bytes:
    about = {k: v for k, v in {**ABOUT, **fields}.items() if v is not ...}
    return vector_file(about=about)


def header_says(change) -> bytes:
    raw = vector_file()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    change(header)
    return raw_safetensors(header, raw[8 + n :])


def bad_values(value) -> bytes:
    values = torch.ones(64)
    values[3] = value
    return vector_file(values)


CASES = {
    "empty file": b"",
    "truncated": vector_file()[:100],
    "not safetensors": b"a text file, not a vector\n" * 10,
    "header length huge": b"\xff" * 8 + vector_file()[8:],
    "header not an object": raw_safetensors([1, 2]),
    "header deeply nested": raw_safetensors({"x": json.loads("[" * 100 + "]" * 100)}),
    "header offsets past the end": header_says(
        lambda h: h["values"].update(data_offsets=[0, 10**6])
    ),
    "header unknown dtype": header_says(lambda h: h["values"].update(dtype="F128")),
    "no description": vector_file(metadata={"format": "pt"}),
    "description not JSON": vector_file(metadata={KEY: "{site: block_output"}),
    "description a list": vector_file(metadata={KEY: "[1, 2]"}),
    "description deeply nested": vector_file(metadata={KEY: "[" * 100_000 + "]" * 100_000}),
    "unknown version": described(version=99),
    "version missing": described(version=...),
    "version as text": described(version="1"),
    "site missing": described(site=...),
    "site not text": described(site=12),
    "layer as text": described(layer="twelve"),
    "layer a bool": described(layer=True),
    "provenance not an object": described(provenance=[1]),
    "missing tensor": vector_file(extra={"other": torch.ones(3)}).replace(b'"values"', b'"valuez"'),
    "extra tensor": vector_file(extra={"other": torch.ones(3)}),
    "int64 values": vector_file(torch.ones(64, dtype=torch.int64)),
    "NaN values": bad_values(float("nan")),
    "infinite values": bad_values(float("-inf")),
    "three dimensions": vector_file(torch.ones(2, 2, 16)),
    "no numbers": vector_file(torch.ones(0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_vector_file_is_refused_naming_it(case, tmp_path):
    path = tmp_path / "kind.safetensors"
    path.write_bytes(CASES[case])
    with pytest.raises(nv.NbveneError) as info:
        nv.Vector.load(path)
    assert str(path) in str(info.value), str(info.value)


def test_a_directory_or_nothing_where_the_file_should_be(tmp_path):
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(nv.NbveneError, match="is a directory") as info:
        nv.Vector.load(tmp_path / "dir.safetensors")
    assert "dir.safetensors" in str(info.value)
    with pytest.raises(nv.NbveneError, match="no vector file"):
        nv.Vector.load(tmp_path / "missing.safetensors")


def test_good_vectors_round_trip(tmp_path):
    for values in (torch.randn(64), torch.randn(3, 64), torch.randn(64).half()):
        v = nv.Vector(values, site="block_output", layer=1, provenance={"method": "tensor"})
        back = nv.Vector.load(v.save(tmp_path / "v.safetensors"))
        assert torch.equal(back.values, v.values) and back.values.dtype == values.dtype
        assert (back.site, back.layer, back.provenance) == ("block_output", 1, {"method": "tensor"})
    assert Path(tmp_path / "v.safetensors").is_file()
