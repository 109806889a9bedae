"""The spec language: text ⇄ `Spec` (frozen dataclasses) ⇄ JSON. Imports no torch.

`STATEMENTS` (spec/statements.py) says how each statement reads, writes and helps;
`nbvene.spec.metrics` holds the metrics a spec can name.
"""

from nbvene.spec.ast import (
    All,
    Batch,
    Call,
    Contrast,
    Corrupt,
    Discover,
    Edit,
    Generate,
    Index,
    Items,
    Last,
    Mapped,
    Metric,
    Phase,
    Scaled,
    SelectorVar,
    Slider,
    Source,
    Span,
    Strengths,
    Text,
    TokenText,
    Var,
    is_swept,
)
from nbvene.spec.document import Spec, has_sliders, is_steering
from nbvene.spec.metrics import MetricDef
from nbvene.spec.parse import parse
from nbvene.spec.serial import from_json, to_json
from nbvene.spec.statements import KEYWORDS, STATEMENTS, Statement
from nbvene.spec.text import format_spec, selector_text

__all__ = [
    "KEYWORDS",
    "STATEMENTS",
    "All",
    "Batch",
    "Call",
    "Contrast",
    "Corrupt",
    "Discover",
    "Edit",
    "Generate",
    "Index",
    "Items",
    "Last",
    "Mapped",
    "Metric",
    "MetricDef",
    "Phase",
    "Scaled",
    "SelectorVar",
    "Slider",
    "Source",
    "Span",
    "Spec",
    "Statement",
    "Strengths",
    "Text",
    "TokenText",
    "Var",
    "format_spec",
    "from_json",
    "has_sliders",
    "is_steering",
    "is_swept",
    "parse",
    "selector_text",
    "to_json",
]
