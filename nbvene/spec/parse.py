"""Spec text → `Spec`: a line-oriented language, one `keyword: value` statement per line.

Each statement's value is read by its entry in `STATEMENTS`; errors name the line and put a
caret under the bad token. Nothing here knows about models.
"""

from __future__ import annotations

import re

from nbvene.errors import NbveneError, did_you_mean
from nbvene.spec.ast import Source
from nbvene.spec.document import Spec
from nbvene.spec.statements import KEYWORDS, STATEMENTS
from nbvene.spec.values import Line, prompts

_NAMED_SOURCE = re.compile(r"\s*source\s+([A-Za-z_]\w*)\s*:")
_KEYWORD = re.compile(r"\s*([A-Za-z_]\w*)\s*:")


def parse(text: str | Spec) -> Spec:
    """Parse spec text into a `Spec` (a `Spec` is returned as it is).

    >>> spec = parse('base: "The Eiffel Tower is in"\\npatch: block_output layer=* pos=-1')
    >>> spec.interventions[0].verb
    'patch'
    """
    if isinstance(text, Spec):
        return text
    if not isinstance(text, str):
        raise NbveneError(
            f"a spec is text (or an nv.Spec), got {type(text).__name__}",
            hint="write e.g. nv.run('base: \"...\"\\npatch: ...', model=...)",
        )
    fields: dict = {"interventions": [], "sources": []}
    lines: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        code = _strip_comment(raw)
        if not code.strip():
            continue
        line = Line(number, raw, code)
        named = _NAMED_SOURCE.match(code)
        if named:
            fields["sources"].append(_named_source(named, line, fields["sources"]))
            continue
        m = _KEYWORD.match(code)
        if not m:
            raise line.error(
                "expected a statement like 'base: \"...\"'",
                len(code) - len(code.lstrip()),
                hint="each line is 'keyword: value'; keywords: " + ", ".join(KEYWORDS),
            )
        keyword = m.group(1)
        statement = STATEMENTS.get(keyword)
        if statement is None:
            raise line.error(
                f"unknown statement {keyword!r}",
                m.start(1),
                hint=did_you_mean(keyword, KEYWORDS) or "statements: " + ", ".join(KEYWORDS),
            )
        if statement.once and keyword in lines:
            raise line.error(
                f"a second {keyword!r} statement",
                m.start(1),
                hint=f"the first is on line {lines[keyword]}; a spec has one {keyword!r}",
            )
        lines.setdefault(keyword, number)
        line.start = m.end()
        value = statement.read(line)
        line.done()
        if statement.once:
            fields[statement.field] = value
        else:
            fields[statement.field].append(value)
    fields["interventions"] = tuple(fields["interventions"])
    fields["sources"] = tuple(fields["sources"])
    return Spec(**fields, lines=lines, text=text)


def _named_source(m: re.Match, line: Line, seen: list[Source]) -> Source:
    """`source s1: "..."`: a source that statements name with `from s1` (multi-source)."""
    name = m.group(1)
    if name in ("base", "source"):
        raise line.error(
            f"{name!r} cannot name a source", m.start(1), hint='pick another name: source s1: "..."'
        )
    first = next((s for s in seen if s.name == name), None)
    if first is not None:
        raise line.error(
            f"a second source named {name!r}",
            m.start(1),
            hint=f"the first is on line {first.line}; give each source its own name",
        )
    line.start = m.end()
    value = prompts(line)
    line.done()
    return Source(name, value, line.number)


def _strip_comment(line: str) -> str:
    quoted = False
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
    return line
