"""`Vector`: a steering vector with its site, layer, model and provenance; saved as one
safetensors file whose header holds that description as JSON (nothing is pickled)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nbvene.errors import NbveneError

_KEY = "nbvene_vector"
_VERSION = 1


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
        from safetensors.torch import save_file

        path = Path(path)
        about = {
            "version": _VERSION,
            "site": self.site,
            "layer": self.layer,
            "model": self.model,
            "provenance": self.provenance,
        }
        tensor = self.values.detach().cpu().contiguous()
        save_file({"values": tensor}, str(path), metadata={_KEY: json.dumps(about)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vector:
        """The vector `save` wrote."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise NbveneError(f"no vector file {str(path)!r}")
        with safe_open(str(path), framework="pt") as f:
            header = (f.metadata() or {}).get(_KEY)
            if header is None:
                raise NbveneError(
                    f"{str(path)!r} is a safetensors file, but not an nbvene vector",
                    hint="write one with Vector.save",
                )
            values = f.get_tensor("values")
        about = json.loads(header)
        return cls(values, about["site"], about["layer"], about["model"], about["provenance"])

    def __repr__(self) -> str:
        shape = "×".join(map(str, self.values.shape))
        where = self.site + ("" if self.layer is None else f" layer={self.layer}")
        how = self.provenance.get("method", "tensor")
        return f"Vector({shape} at {where}, {how}, norm {self.norm:.3g}, model={self.model!r})"
