"""`Spec` ⇄ JSON: every dataclass as an object tagged with its type name."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from nbvene.errors import NbveneError
from nbvene.spec import ast, document

_TYPES = {
    cls.__name__: cls
    for module in (ast, document)
    for cls in vars(module).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls)
}
_TYPES["Intervention"] = ast.Edit  # documents written before the rename
_VERSION = 1


def to_json(spec: document.Spec, **dump_options: Any) -> str:
    """The spec as a JSON document (tagged dataclasses, plus the spec text for people)."""
    return json.dumps({"nbvene_spec": _VERSION, "spec": _encode(spec)}, **dump_options)


def from_json(document: str) -> document.Spec:
    """The spec that `to_json` wrote."""
    data = json.loads(document)
    if not isinstance(data, dict) or data.get("nbvene_spec") != _VERSION:
        raise NbveneError(
            "not an nbvene spec document",
            hint=f"expected a JSON object with 'nbvene_spec': {_VERSION}",
        )
    return _decode(data["spec"])


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "type" in value:
        cls = _TYPES.get(value["type"])
        if cls is None:
            raise NbveneError(f"unknown spec element {value['type']!r} in JSON")
        args = {k: _decode(v) for k, v in value.items() if k != "type"}
        return cls(**args)
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value
