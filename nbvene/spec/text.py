"""`Spec` → spec text: the canonical form, which parses back to an equal `Spec`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from nbvene.spec.statements import STATEMENTS

if TYPE_CHECKING:
    from nbvene.spec.document import Spec
from nbvene.spec.values import prompts_text, selector_text

__all__ = ["format_spec", "selector_text"]


def format_spec(spec: Spec) -> str:
    """The canonical text of a spec, one statement a line, in the order of `STATEMENTS`
    (the edits together, in their written order; named sources after `source:`)."""
    defaults = {f.name: f.default for f in dataclasses.fields(spec)}
    rows = []
    written = set()
    for statement in STATEMENTS.values():
        if statement.field in written:
            continue
        written.add(statement.field)
        value = getattr(spec, statement.field)
        if not statement.once:
            rows += [f"{v.verb}: {STATEMENTS[v.verb].write(v)}" for v in value]
        elif value != defaults[statement.field]:
            rows.append(f"{statement.keyword}: {statement.write(value)}")
        if statement.keyword == "source":
            rows += [f"source {s.name}: {prompts_text(s.prompts)}" for s in spec.sources]
    return "\n".join(rows)
