"""nbvene's files on disk: JSON and safetensors read with every field checked before a tensor
is allocated (a file is data, never code: no pickle, no `torch.load`), and files written whole,
with the user's umask, through a temporary file renamed into place.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from nbvene.errors import NbveneError

MAX_JSON_BYTES = 64 * 2**20
"""A config or a safetensors header larger than this is not one nbvene wrote."""
MAX_DEPTH = 64
"""JSON nested deeper than this is refused (nbvene's own files nest four or five levels)."""

DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
"""safetensors' dtype names, with the torch dtype and bytes per element."""
FLOATS = ("F64", "F32", "F16", "BF16")


def bad(path: Path | str, what: str, hint: str | None = None) -> NbveneError:
    """An error that names the file first."""
    return NbveneError(f"{path}: {what}", hint=hint)


# --- reading -------------------------------------------------------------------------------------


def file_at(path: Path, what: str, hint: str | None = None) -> Path:
    """`path`, which must be a regular file (not missing, not a directory)."""
    if path.is_dir():
        raise bad(path, f"is a directory, and {what} should be a file", hint)
    if not path.is_file():
        raise bad(path, f"is missing: {what} should be here", hint)
    return path


def read_json(path: Path, what: str) -> dict:
    """The JSON object in a file, refused whole if it is too large, not UTF-8, not JSON, nested
    too deep, or not an object."""
    file_at(path, what)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise bad(path, f"is {size} bytes, too large for {what}")
    return parse_json(path.read_bytes(), path, what)


def parse_json(raw: bytes | str, path: Path | str, what: str) -> dict:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        _check_depth(text, path)
        found = json.loads(text)
    except NbveneError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise bad(path, f"{what} is not valid JSON ({type(e).__name__}: {e})") from None
    if not isinstance(found, dict):
        raise bad(path, f"{what} should be a JSON object, and it is a {type(found).__name__}")
    return found


def _check_depth(text: str, path: Path | str) -> None:
    """Refuse deep nesting before the JSON parser recurses into it (brackets inside strings
    count too: a string of that many brackets is no nbvene file either)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return  # too few brackets to nest that deep: no need to walk the text
    depth = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise bad(path, f"JSON nested more than {MAX_DEPTH} levels deep")
        elif ch in "]}":
            depth -= 1


@dataclass(frozen=True)
class Entry:
    """A tensor as a safetensors header declares it."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_header(path: Path, what: str) -> tuple[dict[str, Entry], dict[str, str]]:
    """The tensors a safetensors file declares (name → dtype and shape) and its metadata,
    checked against the file's size before anything is read or allocated."""
    file_at(path, what)
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(8)
        if len(start) < 8:
            raise bad(path, f"is {size} bytes: truncated, or not a safetensors file")
        length = int.from_bytes(start, "little")
        if length > min(size - 8, MAX_JSON_BYTES):
            raise bad(
                path,
                f"is not a safetensors file (its first 8 bytes give a header of {length} bytes, "
                f"and the file has {size})",
            )
        raw = f.read(length)
    header = parse_json(raw, path, "the safetensors header")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise bad(path, "the safetensors metadata should map strings to strings")
    data = size - 8 - length
    entries: dict[str, Entry] = {}
    spans = []
    for name, item in header.items():
        entries[name] = _entry(path, name, item, data)
        spans.append(tuple(item["data_offsets"]))
    spans.sort()
    if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
        raise bad(path, "tensors overlap in the file")
    return entries, meta


def _entry(path: Path, name: str, item, data: int) -> Entry:
    where = f"tensor {name!r}"
    if not isinstance(item, dict):
        raise bad(path, f"{where}: its header entry is not an object")
    dtype, shape, offsets = item.get("dtype"), item.get("shape"), item.get("data_offsets")
    if dtype not in DTYPES:
        raise bad(path, f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_count(n) for n in shape):
        raise bad(path, f"{where}: shape {shape!r} is not a list of sizes")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_count(n) for n in offsets)
        or not offsets[0] <= offsets[1] <= data
    ):
        raise bad(path, f"{where}: data_offsets {offsets!r} lie outside the file ({data} bytes)")
    entry = Entry(dtype, tuple(shape))
    if entry.numel * DTYPES[dtype][1] != offsets[1] - offsets[0]:
        raise bad(
            path,
            f"{where}: shape {shape} of {dtype} is {entry.numel * DTYPES[dtype][1]} bytes, and "
            f"the file holds {offsets[1] - offsets[0]} for it",
        )
    return entry


def _count(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def read_tensors(path: Path, entries: Mapping[str, Entry]) -> dict[str, torch.Tensor]:
    """Read the tensors `read_header` checked, each one finite."""
    from safetensors import safe_open

    tensors = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for name in entries:
                tensors[name] = f.get_tensor(name)
    except Exception as e:  # safetensors' own checks, past ours: still the file's fault
        raise bad(path, f"cannot be read as safetensors ({type(e).__name__}: {e})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            count = int((~torch.isfinite(tensor)).sum())
            raise bad(path, f"tensor {name!r} holds {count} NaN or infinite values")
    return tensors


# --- writing -------------------------------------------------------------------------------------


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` whole: into a temporary file beside it, renamed over `path`, so a
    reader never sees half a file. The file gets the permissions of any file the user makes
    (0666 less the umask: 0644 under umask 022), not `mkstemp`'s owner-only 0600."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], metadata=None) -> Path:
    from safetensors.torch import save

    return write_bytes(path, save(dict(tensors), metadata=metadata))


def _umask() -> int:
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # elsewhere os.umask can only be read by setting it; set it back at once
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
