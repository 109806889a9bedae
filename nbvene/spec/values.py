"""The values inside spec statements, read and written: prompts, numbers, `{names}` and
selectors. `Line` holds one statement's tokens with a cursor and places errors on its line
(a caret under the bad token); the `*_text` functions write values back as a spec says them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from nbvene.errors import NbveneError
from nbvene.spec import ast

LARGEST = 1e30
"""The largest number a spec may write (noise scales, strengths, temperatures): beyond it
float arithmetic gives inf."""
LARGEST_INT = 2**63 - 1
"""The largest integer (seeds, ids, positions): what a 64-bit tensor or generator holds."""

_TOKEN = re.compile(
    r"""
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<arrow>->)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<dots>\.\.)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<op>[=\[\],*{}()σ])
  | (?P<space>\s+)
  | (?P<bad>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # str, arrow, num, dots, ident, op, end
    value: str
    column: int


class Line:
    """One spec line: errors placed on it, and the tokens of its value (from `start`, read
    when first looked at, so a statement may first take a raw word such as a module path)."""

    def __init__(self, number: int, text: str, code: str):
        self.number, self.text, self.code = number, text, code
        """`code`: the text without its comment."""
        self.start = 0
        self._tokens: list[Token] | None = None
        self.i = 0

    def error(self, message: str, column: int, hint: str | None = None) -> NbveneError:
        return NbveneError(message, line=self.number, text=self.text, column=column, hint=hint)

    def word(self, what: str, example: str) -> str:
        """The raw word at `start` (a component: a site name, a hook name or a module path
        with dots and brackets), read whole before the rest is tokenised."""
        m = re.match(r"\s*([^\s=]+)", self.code[self.start :])
        if not m or m.group(1).startswith(("{", '"')):
            raise self.error(
                f"{what}: needs a component",
                len(self.code.rstrip()),
                hint=f"write e.g. '{example}'",
            )
        self.start += m.end()
        return m.group(1)

    @property
    def tokens(self) -> list[Token]:
        if self._tokens is None:
            self._tokens = []
            for m in _TOKEN.finditer(self.code, self.start):
                kind = m.lastgroup
                if kind == "space":
                    continue
                if kind == "bad":
                    message = "unterminated string" if m.group() == '"' else "unexpected character"
                    raise self.error(f"{message} {m.group()!r}", m.start())
                self._tokens.append(Token(kind, m.group(), m.start()))
            self._tokens.append(Token("end", "", len(self.text.rstrip())))
        return self._tokens

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.i += 1
        return token

    def at(self, value: str) -> bool:
        return self.peek().value == value and self.peek().kind != "str"

    def expect(self, value: str, what: str) -> Token:
        token = self.take()
        if token.value != value or token.kind == "str":
            raise self.error(f"expected {what}, found {shown(token)}", token.column)
        return token

    def done(self) -> None:
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {shown(token)}", token.column)


def shown(token: Token) -> str:
    """A token as an error names it."""
    return "end of line" if token.kind == "end" else repr(token.value)


# --- reading --------------------------------------------------------------------------------


def string(line: Line, token: Token) -> str:
    """A double-quoted string: JSON escapes; tabs and other control characters are kept."""
    try:
        value = json.loads(token.value, strict=False)
    except json.JSONDecodeError as e:
        raise line.error(
            f"bad escape in {token.value!r}: {e.msg}",
            token.column + e.pos,
            hint=r"write \" for a quote, \\ for a backslash, \n for a new line, \t for a tab",
        ) from None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise line.error(
            f"{token.value} holds {value[e.start]!r}, half of a surrogate pair, not a character",
            token.column,
            hint=r"write the character itself, or both halves: \ud83d\ude00",
        ) from None
    return value


def text(line: Line, what: str) -> str:
    """A double-quoted string where one must be."""
    token = line.take()
    if token.kind != "str":
        raise line.error(f"expected {what} in double quotes, found {shown(token)}", token.column)
    return string(line, token)


def var(line: Line) -> ast.Var:
    """`{name}`, the cursor on the `{`."""
    line.expect("{", "'{'")
    name = line.take()
    if name.kind != "ident":
        raise line.error(f"expected a variable name, found {shown(name)}", name.column)
    line.expect("}", "'}'")
    return ast.Var(name.value)


def prompt(line: Line) -> ast.Text | ast.Var:
    """One prompt: a quoted string or a `{name}`."""
    token = line.peek()
    if token.kind == "str":
        line.take()
        return ast.Text(string(line, token))
    if line.at("{"):
        return var(line)
    raise line.error(
        f"expected a prompt, found {shown(token)}",
        token.column,
        hint='write a double-quoted string, a {variable} or a list ["...", "..."]',
    )


def prompts(line: Line) -> ast.Prompts:
    """A prompt, or a batch of them in brackets."""
    if not line.at("["):
        return prompt(line)
    return ast.Batch(listed(line, prompt))


def listed(line: Line, item) -> tuple:
    """`[a, b, c]`, each read by `item(line)`, the cursor on the `[`."""
    line.expect("[", "'['")
    items = [item(line)]
    while line.at(","):
        line.take()
        items.append(item(line))
    line.expect("]", "',' or ']'")
    return tuple(items)


def number(line: Line, what: str) -> float:
    token = line.take()
    if token.kind != "num":
        raise line.error(f"expected {what}, found {shown(token)}", token.column)
    value = float(token.value)
    if not math.isfinite(value) or abs(value) > LARGEST:
        raise line.error(
            f"{_short(token.value)} is too large: numbers go up to {LARGEST:.0e}",
            token.column,
            hint=f"write {what} of a sensible size",
        )
    return value


def integer(line: Line, what: str) -> int:
    token = line.take()
    whole, _, fraction = token.value.partition(".")
    if token.kind != "num" or fraction.strip("0"):
        raise line.error(f"expected {what}, found {shown(token)}", token.column)
    value = int(whole)
    if abs(value) > LARGEST_INT:
        raise line.error(
            f"{_short(token.value)} is too large: integers go up to 2**63 - 1",
            token.column,
            hint=f"write {what} of a sensible size",
        )
    return value


def integers(line: Line) -> tuple[int, ...]:
    """`[1, 4, 7]`, the cursor on the `[`."""
    return listed(line, lambda line: integer(line, "an integer"))


def _short(number: str) -> str:
    """A number as the error shows it: 400 digits are cut to their first and last few."""
    return number if len(number) <= 24 else f"{number[:10]}…{number[-6:]} ({len(number)} digits)"


def selector(line: Line, axis: str) -> ast.Selector:
    """The value of `layer=`, `pos=` or `head=`."""
    if line.at("*"):
        line.take()
        return ast.All()
    if line.at("["):
        return ast.Items(integers(line))
    if line.at("{"):
        return ast.SelectorVar(var(line).name)
    single = _position(line, axis)
    if isinstance(single, ast.Index) and line.peek().kind == "dots":
        line.take()
        stop = integer(line, "the end of the range")
        return ast.Span(single.value, stop)
    if line.peek().kind == "arrow":
        arrow = line.take()
        if axis != "pos":
            raise line.error(
                "'->' maps base positions to source positions: pos= only", arrow.column
            )
        return ast.Mapped(single, _position(line, axis))
    return single


def _position(line: Line, axis: str) -> ast.Index | ast.Last | ast.TokenText:
    token = line.peek()
    if token.kind == "num":
        return ast.Index(integer(line, "an integer"))
    if token.kind == "str" and axis == "pos":
        line.take()
        return ast.TokenText(string(line, token))
    if token.value == "last" and axis == "pos":
        line.take()
        return ast.Last()
    if token.value in ("prompt", "generated") and axis == "pos":
        line.take()
        return ast.Phase(token.value)
    hint = {
        "pos": "an integer (negative from the end), a..b, [..], *, last, prompt, generated, "
        'or a token text "..."',
        "layer": "an integer, a..b, [..] or *",
        "head": "an integer, a..b, [..] or *",
    }[axis]
    raise line.error(f"bad value {shown(token)} for {axis}=", token.column, hint=hint)


# --- writing --------------------------------------------------------------------------------


def quoted(value: str) -> str:
    """A string as a spec writes it, in double quotes with JSON escapes."""
    return json.dumps(value, ensure_ascii=False)


def var_text(v: ast.Var) -> str:
    return "{" + v.name + "}"


def prompts_text(value: ast.Prompts) -> str:
    if isinstance(value, ast.Batch):
        return "[" + ", ".join(prompts_text(p) for p in value.items) + "]"
    if isinstance(value, ast.Var):
        return var_text(value)
    return quoted(value.value)


def number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def selector_text(s: ast.Selector) -> str:
    """A selector as written in a spec."""
    match s:
        case ast.Index(value):
            return str(value)
        case ast.Span(start, stop):
            return f"{start}..{stop}"
        case ast.Items(items):
            return "[" + ", ".join(map(str, items)) + "]"
        case ast.All():
            return "*"
        case ast.TokenText(text):
            return quoted(text)
        case ast.Last():
            return "last"
        case ast.SelectorVar(name):
            return "{" + name + "}"
        case ast.Phase(name):
            return name
        case ast.Mapped(base, source):
            return f"{selector_text(base)}->{selector_text(source)}"
    raise TypeError(f"not a selector: {s!r}")
