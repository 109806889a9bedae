"""The spec language: text ⇄ `Spec` (frozen dataclasses) ⇄ JSON. Imports no torch."""

from nbvene.spec.ast import (
    All,
    Batch,
    Call,
    Corrupt,
    Index,
    Intervention,
    Items,
    Last,
    Mapped,
    Metric,
    Scaled,
    SelectorVar,
    Span,
    Spec,
    Text,
    TokenText,
    Var,
    is_swept,
)
from nbvene.spec.parse import KEYWORDS, METRICS, parse
from nbvene.spec.serial import from_json, to_json
from nbvene.spec.text import format_spec, selector_text

__all__ = [
    "KEYWORDS",
    "METRICS",
    "All",
    "Batch",
    "Call",
    "Corrupt",
    "Index",
    "Intervention",
    "Items",
    "Last",
    "Mapped",
    "Metric",
    "Scaled",
    "SelectorVar",
    "Span",
    "Spec",
    "Text",
    "TokenText",
    "Var",
    "format_spec",
    "from_json",
    "is_swept",
    "parse",
    "selector_text",
    "to_json",
]
