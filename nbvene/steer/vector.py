"""`Vector`: a steering vector with its site, layer, model and provenance; saved as one
safetensors file whose header holds that description as JSON (nothing is pickled)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nbvene.errors import NbveneError
from nbvene.files import FLOATS, bad, parse_json, read_header, read_tensors, write_safetensors

_KEY = "nbvene_vector"
_VERSION = 1
_FIELDS = (
    ("site", str, "a component name"),
    ("layer", (int, type(None)), "a layer number or null"),
    ("model", (str, type(None)), "a model name or null"),
    ("provenance", dict, "an object"),
)


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True, eq=False)
class Vector:
    """A direction in a site's units: `(d,)` is added at every chosen position; `(k, d)` (from
    two prompts, `method="diff"`) holds one vector per position 0..k-1 (activation addition).

    >>> v = nv.Vector(torch.ones(576), site="block_output", layer=12)
    >>> v.save("v.safetensors"); nv.Vector.load("v.safetensors").layer
    12
    """

    values: torch.Tensor
    site: str
    layer: int | None = None
    model: str | None = None
    provenance: dict = field(default_factory=dict)
    """How it was made: method, positive and negative prompts, position, normalized."""

    def __post_init__(self) -> None:
        if not isinstance(self.values, torch.Tensor) or self.values.dim() not in (1, 2):
            raise NbveneError(
                "a Vector holds a (d,) tensor, or (k, d): one vector per position",
                hint="pass e.g. torch.randn(576)",
            )

    @property
    def per_position(self) -> bool:
        """Whether it holds one vector per position (added at positions 0..k-1)."""
        return self.values.dim() == 2

    @property
    def norm(self) -> float:
        return float(self.values.float().norm(dim=-1).mean())

    def normalized(self) -> Vector:
        """The same direction with unit norm (each position's vector, for `(k, d)`)."""
        unit = self.values / self.values.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return replace(self, values=unit, provenance={**self.provenance, "normalized": True})

    def save(self, path: str | Path) -> Path:
        """Write the vector to `path` (a `.safetensors` file, its description in the header)."""
        path = Path(path)
        about = {
            "version": _VERSION,
            "site": self.site,
            "layer": self.layer,
            "model": self.model,
            "provenance": self.provenance,
        }
        tensor = self.values.detach().cpu().contiguous()
        return write_safetensors(path, {"values": tensor}, metadata={_KEY: json.dumps(about)})

    @classmethod
    def load(cls, path: str | Path) -> Vector:
        """The vector `save` wrote, every field checked before its numbers are read: one
        finite float tensor `values` of shape (d,) or (k, d), and a description of known
        version whose fields have their types. Anything else is an `NbveneError` naming the
        file."""
        path = Path(path)
        if not path.exists():
            raise NbveneError(f"no vector file {str(path)!r}")
        entries, meta = read_header(path, "a vector file")
        if _KEY not in meta:
            raise bad(
                path,
                "is a safetensors file, but not an nbvene vector (no description in its header)",
                hint="write one with Vector.save",
            )
        about = parse_json(meta[_KEY], path, "the vector's description")
        version = about.get("version")
        if not _whole(version) or not 1 <= version <= _VERSION:
            raise bad(
                path,
                f"version {version!r} of the vector's description is not one this nbvene reads "
                f"(1..{_VERSION})",
                hint="it was written by a newer nbvene; upgrade" if _whole(version) else None,
            )
        for name, kinds, what in _FIELDS:
            if name not in about:
                raise bad(path, f"the vector's description has no field {name!r}")
            if not isinstance(about[name], kinds) or isinstance(about[name], bool):
                raise bad(path, f"field {name!r} should be {what}, got {about[name]!r:.60}")
        if set(entries) != {"values"}:
            raise bad(
                path,
                f"a vector file holds one tensor, 'values'; this one holds {sorted(entries)}",
            )
        entry = entries["values"]
        if entry.dtype not in FLOATS:
            raise bad(path, f"tensor 'values' is {entry.dtype}, and a vector is floating point")
        if len(entry.shape) not in (1, 2) or 0 in entry.shape:
            raise bad(
                path, f"tensor 'values' has shape {list(entry.shape)}; a vector is (d,) or (k, d)"
            )
        values = read_tensors(path, entries)["values"]
        return cls(values, about["site"], about["layer"], about["model"], about["provenance"])

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.values.shape))
        where = self.site + ("" if self.layer is None else f" layer={self.layer}")
        how = self.provenance.get("method", "tensor")
        return f"Vector({shape} at {where}, {how}, norm {self.norm:.3g}, model={self.model!r})"
