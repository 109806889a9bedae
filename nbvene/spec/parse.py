"""Spec text → `Spec`: a line-oriented language, one `keyword: value` statement per line.

Errors name the line and put a caret under the bad token; nothing here knows about models.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from nbvene.errors import NbveneError, did_you_mean
from nbvene.spec.ast import (
    VERBS,
    All,
    Batch,
    Call,
    Contrast,
    Corrupt,
    Generate,
    Index,
    Intervention,
    Items,
    Last,
    Mapped,
    Metric,
    Phase,
    Prompts,
    Scaled,
    Selector,
    SelectorVar,
    Slider,
    Source,
    Span,
    Spec,
    Strengths,
    Text,
    TokenText,
    Var,
)

KEYWORDS = ("base", "source", "corrupt", *VERBS, "metric", "label", "estimate", "generate")
_ONCE = ("base", "source", "corrupt", "metric", "label", "estimate", "generate")
CONTRASTS = ("mean_diff", "pca", "diff")
"""Steering vectors made from prompts: `by mean_diff({kind}, {cruel})`."""
ESTIMATES = ("exact", "attribution")
METRICS = ("p", "prob", "logprob", "logit", "logit_diff", "kl")
AXES = ("layer", "pos", "head")
LARGEST = 1e30
"""The largest number a spec may write (noise scales, strengths, temperatures): beyond it
float arithmetic gives inf."""
MAX_STRENGTHS = 10_000
"""The most values a strength sweep `a..b step s` may have (each is a steered run)."""
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


class _Line:
    """The tokens of one statement's value, with a cursor and errors placed on the line."""

    def __init__(self, number: int, text: str, start: int, value: str):
        self.number, self.text = number, text
        self.tokens = []
        for m in _TOKEN.finditer(value):
            kind = m.lastgroup
            if kind == "space":
                continue
            if kind == "bad":
                message = "unterminated string" if m.group() == '"' else "unexpected character"
                raise self.error(f"{message} {m.group()!r}", start + m.start())
            self.tokens.append(Token(kind, m.group(), start + m.start()))
        self.tokens.append(Token("end", "", len(text.rstrip())))
        self.i = 0

    def error(self, message: str, column: int, hint: str | None = None) -> NbveneError:
        return NbveneError(message, line=self.number, text=self.text, column=column, hint=hint)

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
            raise self.error(f"expected {what}, found {_shown(token)}", token.column)
        return token

    def done(self) -> None:
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {_shown(token)}", token.column)


def _shown(token: Token) -> str:
    return "end of line" if token.kind == "end" else repr(token.value)


def _string(line: _Line, token: Token) -> str:
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
        named = _NAMED_SOURCE.match(code)
        if named:
            fields["sources"].append(_named_source(named, number, raw, code, fields["sources"]))
            continue
        m = re.match(r"\s*([A-Za-z_]\w*)\s*:", code)
        if not m:
            column = len(code) - len(code.lstrip())
            raise NbveneError(
                "expected a statement like 'base: \"...\"'",
                line=number,
                text=raw,
                column=column,
                hint="each line is 'keyword: value'; keywords: " + ", ".join(KEYWORDS),
            )
        keyword = m.group(1)
        if keyword not in KEYWORDS:
            raise NbveneError(
                f"unknown statement {keyword!r}",
                line=number,
                text=raw,
                column=m.start(1),
                hint=did_you_mean(keyword, KEYWORDS) or "statements: " + ", ".join(KEYWORDS),
            )
        if keyword in _ONCE and keyword in lines:
            raise NbveneError(
                f"a second {keyword!r} statement",
                line=number,
                text=raw,
                column=m.start(1),
                hint=f"the first is on line {lines[keyword]}; a spec has one {keyword!r}",
            )
        lines.setdefault(keyword, number)
        start = m.end()
        if keyword in VERBS:
            component, start = _component(keyword, number, raw, code, start)
        line = _Line(number, raw, start, code[start:])
        if keyword in ("base", "source"):
            fields[keyword] = _prompts(line)
        elif keyword == "corrupt":
            fields["corrupt"] = _corrupt(line)
        elif keyword == "metric":
            fields["metric"] = _metric(line)
        elif keyword == "label":
            fields["label"] = _label(line)
        elif keyword == "estimate":
            fields["estimate"] = _estimate(line)
        elif keyword == "generate":
            fields["generate"] = _generate(line)
        else:
            fields["interventions"].append(_intervention(keyword, component, line))
        line.done()
    fields["interventions"] = tuple(fields["interventions"])
    fields["sources"] = tuple(fields["sources"])
    return Spec(**fields, lines=lines, text=text)


_NAMED_SOURCE = re.compile(r"\s*source\s+([A-Za-z_]\w*)\s*:")


def _named_source(m: re.Match, number: int, raw: str, code: str, seen: list[Source]) -> Source:
    """`source s1: "..."`: a source that statements name with `from s1` (multi-source)."""
    name = m.group(1)
    if name in ("base", "source"):
        raise NbveneError(
            f"{name!r} cannot name a source",
            line=number,
            text=raw,
            column=m.start(1),
            hint='pick another name: source s1: "..."',
        )
    first = next((s for s in seen if s.name == name), None)
    if first is not None:
        raise NbveneError(
            f"a second source named {name!r}",
            line=number,
            text=raw,
            column=m.start(1),
            hint=f"the first is on line {first.line}; give each source its own name",
        )
    line = _Line(number, raw, m.end(), code[m.end() :])
    prompts = _prompts(line)
    line.done()
    return Source(name, prompts, number)


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


def _var(line: _Line) -> Var:
    line.expect("{", "'{'")
    name = line.take()
    if name.kind != "ident":
        raise line.error(f"expected a variable name, found {_shown(name)}", name.column)
    line.expect("}", "'}'")
    return Var(name.value)


def _prompt(line: _Line) -> Text | Var:
    token = line.peek()
    if token.kind == "str":
        line.take()
        return Text(_string(line, token))
    if line.at("{"):
        return _var(line)
    raise line.error(
        f"expected a prompt, found {_shown(token)}",
        token.column,
        hint='write a double-quoted string, a {variable} or a list ["...", "..."]',
    )


def _prompts(line: _Line) -> Prompts:
    if not line.at("["):
        return _prompt(line)
    line.take()
    items = [_prompt(line)]
    while line.at(","):
        line.take()
        items.append(_prompt(line))
    line.expect("]", "',' or ']'")
    return Batch(tuple(items))


def _number(line: _Line, what: str) -> float:
    token = line.take()
    if token.kind != "num":
        raise line.error(f"expected {what}, found {_shown(token)}", token.column)
    value = float(token.value)
    if not math.isfinite(value) or abs(value) > LARGEST:
        raise line.error(
            f"{_short(token.value)} is too large: numbers go up to {LARGEST:.0e}",
            token.column,
            hint=f"write {what} of a sensible size",
        )
    return value


def _integer(line: _Line, what: str) -> int:
    token = line.take()
    whole, _, fraction = token.value.partition(".")
    if token.kind != "num" or fraction.strip("0"):
        raise line.error(f"expected {what}, found {_shown(token)}", token.column)
    value = int(whole)
    if abs(value) > LARGEST_INT:
        raise line.error(
            f"{_short(token.value)} is too large: integers go up to 2**63 - 1",
            token.column,
            hint=f"write {what} of a sensible size",
        )
    return value


def _short(number: str) -> str:
    """A number as the error shows it: 400 digits are cut to their first and last few."""
    return number if len(number) <= 24 else f"{number[:10]}…{number[-6:]} ({len(number)} digits)"


def _corrupt(line: _Line) -> Corrupt:
    kind = line.take()
    if kind.value != "noise":
        raise line.error(
            f"unknown corruption {_shown(kind)}",
            kind.column,
            hint='write: corrupt: noise 3σ on "subject text"',
        )
    scale = _number(line, "a noise scale such as 3σ")
    relative = False
    if line.at("σ") or line.at("sigma"):
        line.take()
        relative = True
    line.expect("on", "'on' and the subject")
    subject = _prompt(line)
    if isinstance(subject, Batch):  # pragma: no cover - _prompt never returns a Batch
        raise line.error("one subject", 0)
    options = {"samples": 1, "seed": 0}
    while line.peek().kind == "ident":
        key = line.take()
        if key.value not in options:
            raise line.error(
                f"unknown option {key.value!r} for corrupt",
                key.column,
                hint=did_you_mean(key.value, options) or "options: samples=N, seed=N",
            )
        line.expect("=", "'='")
        options[key.value] = _integer(line, f"an integer for {key.value}")
    if options["samples"] < 1:
        raise line.error("samples must be at least 1", line.peek().column)
    return Corrupt(scale, subject, relative, options["samples"], options["seed"], line.number)


def _metric(line: _Line) -> Metric:
    name = line.take()
    if name.kind != "ident" or name.value not in METRICS:
        raise line.error(
            f"unknown metric {_shown(name)}",
            name.column,
            hint=did_you_mean(name.value, METRICS) or "metrics: " + ", ".join(METRICS),
        )
    args: list[str | int] = []
    if line.at("("):
        line.take()
        while not line.at(")"):
            token = line.peek()
            if token.kind == "num":  # a token id, or a class index for a classifier
                args.append(_integer(line, "a token id"))
            elif token.kind == "str":
                args.append(_string(line, line.take()))
            else:
                raise line.error(
                    f'expected a quoted token (" Paris") or a token id, found {_shown(token)}',
                    token.column,
                )
            if not line.at(")"):
                line.expect(",", "',' or ')'")
        line.take()
    normalized = False
    if line.at("normalized"):
        line.take()
        normalized = True
    wanted = {"p": 1, "prob": 1, "logprob": 1, "logit": 1, "logit_diff": 2, "kl": 0}[name.value]
    if len(args) != wanted:
        example = {0: "kl", 1: f'{name.value}(" Paris")', 2: 'logit_diff(" Paris", " Rome")'}
        raise line.error(
            f"{name.value} takes {wanted} token{'s' if wanted != 1 else ''}, got {len(args)}",
            name.column,
            hint=f"write: metric: {example[wanted]}",
        )
    return Metric("p" if name.value == "prob" else name.value, tuple(args), normalized, line.number)


def _component(verb: str, number: int, raw: str, code: str, start: int) -> tuple[str, int]:
    # The component is the first word: a site name, a TransformerLens hook name, or a raw
    # module path with dots and brackets, so it is read whole before the rest is tokenised.
    m = re.match(r"\s*([^\s=]+)", code[start:])
    if not m or m.group(1).startswith(("{", '"')):
        raise NbveneError(
            f"{verb}: needs a component",
            line=number,
            text=raw,
            column=len(code.rstrip()),
            hint=f"write e.g. '{verb}: block_output layer=* pos=-1'",
        )
    return m.group(1), start + m.end()


# Which options each verb takes, besides layer=, pos= and head=.
_OPTIONS = {
    "patch": ("window", "via"),
    "restore": ("window", "via"),
    "add": ("window", "by", "via"),
    "subtract": ("window", "by", "via"),
    "zero": ("window", "via"),
    "mean": ("window", "over", "via"),
    "collect": (),
    "steer": ("by",),
}


def _intervention(verb: str, component: str, line: _Line) -> Intervention:
    where: dict[str, Selector] = {}
    options: dict = {}
    while line.peek().kind != "end":
        key = line.take()
        if key.kind != "ident":
            raise line.error(f"expected 'key=value', found {_shown(key)}", key.column)
        if key.value in ("from", "into"):
            _run_name(verb, key, line, options)
            continue
        known = (*AXES, "window", "over", "by", "via")
        if key.value not in known:
            raise line.error(
                f"unknown key {key.value!r}",
                key.column,
                hint=did_you_mean(key.value, known)
                or "keys: layer=, pos=, head=, window=, over=, by, via",
            )
        if key.value not in AXES and key.value not in _OPTIONS[verb]:
            takes = ", ".join(_OPTIONS[verb]) or "no options"
            raise line.error(
                f"{verb}: takes no {key.value!r}", key.column, hint=f"{verb}: takes {takes}"
            )
        if key.value in where or key.value in options:
            raise line.error(f"{key.value} given twice", key.column)
        if key.value == "by":
            options["by"] = _scaled(line)
            continue
        if key.value == "via":
            options["via"] = _via(line)
            continue
        line.expect("=", "'='")
        if key.value == "window":
            options["window"] = _integer(line, "a window size such as 10")
            if options["window"] < 1:
                raise line.error("window must be at least 1", key.column)
        elif key.value == "over":
            options["over"] = _prompts(line)
        else:
            where[key.value] = _selector(line, key.value)
    if "by" in options and "via" in options:
        raise line.error(f"{verb}: by and via together", 0, hint="give one or the other")
    if "from" in options and "by" in options:
        raise line.error(f"{verb}: by and from together", 0, hint="give one or the other")
    if verb == "steer" and "by" not in options:
        raise line.error(
            "steer: needs a vector", line.peek().column, hint="write: steer: ... by {vector} * 2"
        )
    window, by, over, via = (options.get(k) for k in ("window", "by", "over", "via"))
    return Intervention(
        verb, component, tuple(where.items()), window, by, over, via, line=line.number,
        source=options.get("from"), into=options.get("into"),
    )  # fmt: skip


# Multi-source: the verbs that read a source take `from s1`; any verb but collect may act on a
# named source's run instead of the base with `into s2`.
_FROM = ("patch", "restore", "add", "subtract")


def _run_name(verb: str, key: Token, line: _Line, options: dict) -> None:
    """`from s1` / `into s2`: the name of a source, the cursor after the keyword."""
    if key.value in options:
        raise line.error(f"{key.value} given twice", key.column)
    if verb == "collect" or (key.value == "from" and verb not in _FROM):
        raise line.error(
            f"{verb}: takes no {key.value!r}",
            key.column,
            hint=f"'from' goes with {', '.join(_FROM)}; 'into' with any verb but collect",
        )
    name = line.take()
    if name.kind != "ident":
        raise line.error(
            f"expected a source name after {key.value!r}, found {_shown(name)}",
            name.column,
            hint=f'name a source line: source s1: "..." and write {key.value} s1',
        )
    options[key.value] = name.value


def _label(line: _Line) -> Var:
    if not line.at("{"):
        token = line.peek()
        raise line.error(
            f"expected {{labels}} after 'label:', found {_shown(token)}",
            token.column,
            hint="write: label: {labels}, with labels=... in the namespace",
        )
    return _var(line)


def _estimate(line: _Line) -> str:
    """`estimate: exact` (the default) or `estimate: attribution` (attribution patching)."""
    token = line.take()
    if token.kind != "ident" or token.value not in ESTIMATES:
        raise line.error(
            f"unknown estimate {_shown(token)}",
            token.column,
            hint=did_you_mean(token.value, ESTIMATES) or "write: estimate: attribution",
        )
    return token.value


def _via(line: _Line) -> Var | Call:
    """`via {f}`, or `via rotated(k=1, dims=[0, 2])`: a named intervention with its arguments."""
    if line.at("{"):
        return _var(line)
    name = line.take()
    if name.kind != "ident" or not line.at("("):
        raise line.error(
            f"expected {{f}} or an intervention such as rotated(k=1) after 'via', "
            f"found {_shown(name)}",
            name.column,
            hint="write: via {f}  or  via rotated(k=1)",
        )
    line.take()
    args: dict[str, object] = {}
    while not line.at(")"):
        key = line.take()
        if key.kind != "ident":
            raise line.error(f"expected 'key=value', found {_shown(key)}", key.column)
        if key.value in args:
            raise line.error(f"{key.value} given twice", key.column)
        line.expect("=", "'='")
        args[key.value] = _argument(line)
        if not line.at(")"):
            line.expect(",", "',' or ')'")
    line.take()
    return Call(name.value, tuple(args.items()))


def _argument(line: _Line) -> object:
    """An argument of `via name(...)`: a number, a quoted string, [integers] or {name}."""
    token = line.peek()
    if token.kind == "num":
        if "." in token.value:
            return _number(line, "a number")
        return _integer(line, "an integer")
    if token.kind == "str":
        return _string(line, line.take())
    if line.at("{"):
        return _var(line)
    if line.at("["):
        return _integers(line)
    raise line.error(
        f"expected a value, found {_shown(token)}",
        token.column,
        hint="a number, a quoted string, a list [0, 1] or a {name}",
    )


def _integers(line: _Line) -> tuple[int, ...]:
    """`[1, 4, 7]`, the cursor on the `[`."""
    line.expect("[", "'['")
    items = [_integer(line, "an integer")]
    while line.at(","):
        line.take()
        items.append(_integer(line, "an integer"))
    line.expect("]", "',' or ']'")
    return tuple(items)


def _scaled(line: _Line) -> Scaled:
    """`by {v}`, `by mean_diff({kind}, {cruel}) normalized`, then `* 2`, `* slider(-4, 4, 1)`,
    `* 0..8 step 2` or `* [0, 1, 2]`."""
    token = line.peek()
    if line.at("{"):
        vector = _var(line)
    elif token.kind == "ident" and token.value in CONTRASTS:
        vector = _contrast(line)
    else:
        raise line.error(
            f"expected a {{vector}} or mean_diff(...) after 'by', found {_shown(token)}",
            token.column,
            hint="write: by {vector} * 2  or  by mean_diff({positive}, {negative}) * 2",
        )
    scale: float | Slider | Strengths = 1.0
    if line.at("*"):
        line.take()
        scale = _strength(line)
    return Scaled(vector, scale)


def _contrast(line: _Line) -> Contrast:
    """`mean_diff({kind}, {cruel})`, `pca(...)` or `diff("Love", "Hate")`, then `normalized`."""
    method = line.take().value
    line.expect("(", f"'(' after {method}")
    positive = _prompts(line)
    line.expect(",", "',' and the negative prompts")
    negative = _prompts(line)
    line.expect(")", "')'")
    normalized = line.at("normalized")
    if normalized:
        line.take()
    return Contrast(method, positive, negative, normalized)


def _strength(line: _Line) -> float | Slider | Strengths:
    """After `*`: a number, `slider(lo, hi, start)`, `a..b step s` or `[a, b, c]`."""
    token = line.peek()
    if token.value == "slider" and token.kind == "ident":
        line.take()
        line.expect("(", "'(' after slider")
        low = _number(line, "the slider's low end")
        line.expect(",", "','")
        high = _number(line, "the slider's high end")
        line.expect(",", "','")
        start = _number(line, "the slider's start value")
        line.expect(")", "')'")
        if not low <= start <= high:
            raise line.error(
                f"slider({low:g}, {high:g}, {start:g}): the start is not between the ends",
                token.column,
                hint="write slider(low, high, start) with low <= start <= high",
            )
        return Slider(low, high, start)
    if line.at("["):
        line.take()
        values = [_number(line, "a strength")]
        while line.at(","):
            line.take()
            values.append(_number(line, "a strength"))
        line.expect("]", "',' or ']'")
        return Strengths(tuple(values))
    value = _number(line, "a number, slider(lo, hi, start) or a sweep 0..8 step 2 after '*'")
    if line.peek().kind != "dots":
        return value
    line.take()
    stop = _number(line, "the end of the strength sweep")
    step = 1.0
    if line.at("step"):
        line.take()
        step = _number(line, "a step such as 2")
    if step <= 0 or stop < value:
        raise line.error(
            f"the strength sweep {value:g}..{stop:g} step {step:g} is empty",
            token.column,
            hint="sweeps go upwards with a positive step: 0..8 step 2 is 0, 2, 4, 6, 8",
        )
    count = int(round((stop - value) / step, 9)) + 1
    if count > MAX_STRENGTHS:
        raise line.error(
            f"the strength sweep {value:g}..{stop:g} step {step:g} has {count:.3g} values, "
            f"more than {MAX_STRENGTHS:,}",
            token.column,
            hint="take a larger step, or a shorter range",
        )
    return Strengths(tuple(round(value + k * step, 9) for k in range(count)))


_GENERATE = ("max_new_tokens", "temperature", "seed", "stop")


def _generate(line: _Line) -> Generate:
    """`generate: ["prompt"] max_new_tokens=30 temperature=0.7 seed=1 stop="\\n"`."""
    prompt = None
    if line.peek().kind == "str" or line.at("{"):
        prompt = _prompt(line)
    options: dict = {}
    while line.peek().kind != "end":
        key = line.take()
        if key.kind != "ident" or key.value not in _GENERATE:
            raise line.error(
                f"unknown option {_shown(key)} for generate",
                key.column,
                hint=did_you_mean(key.value, _GENERATE)
                or "options: " + ", ".join(k + "=" for k in _GENERATE),
            )
        if key.value in options:
            raise line.error(f"{key.value} given twice", key.column)
        line.expect("=", "'='")
        if key.value == "stop":
            options["stop"] = _stops(line)
        elif key.value == "temperature":
            options["temperature"] = _number(line, "a temperature such as 0.7 (0: greedy)")
        else:
            options[key.value] = _integer(line, f"an integer for {key.value}")
    if options.get("max_new_tokens", 1) < 1:
        raise line.error("max_new_tokens must be at least 1", 0)
    if options.get("temperature", 0) < 0:
        raise line.error("temperature must be 0 (greedy) or more", 0)
    return Generate(prompt, **options, line=line.number)


def _stops(line: _Line) -> tuple[str, ...]:
    """`"\\n"` or `["\\n", "."]`: strings that end a generated text."""
    if line.at("["):
        line.take()
        items = [_stop(line)]
        while line.at(","):
            line.take()
            items.append(_stop(line))
        line.expect("]", "',' or ']'")
        return tuple(items)
    return (_stop(line),)


def _stop(line: _Line) -> str:
    column = line.peek().column
    text = _text(line, "a stop string")
    if not text:
        raise line.error(
            'stop="" would end every text before its first token',
            column,
            hint='give the text that ends a generation, e.g. stop="\\n"',
        )
    return text


def _text(line: _Line, what: str) -> str:
    token = line.take()
    if token.kind != "str":
        raise line.error(f"expected {what} in double quotes, found {_shown(token)}", token.column)
    return _string(line, token)


def _selector(line: _Line, axis: str) -> Selector:
    if line.at("*"):
        line.take()
        return All()
    if line.at("["):
        return Items(_integers(line))
    if line.at("{"):
        var = _var(line)
        return SelectorVar(var.name)
    single = _position(line, axis)
    if isinstance(single, Index) and line.peek().kind == "dots":
        line.take()
        stop = _integer(line, "the end of the range")
        return Span(single.value, stop)
    if line.peek().kind == "arrow":
        arrow = line.take()
        if axis != "pos":
            raise line.error(
                "'->' maps base positions to source positions: pos= only", arrow.column
            )
        return Mapped(single, _position(line, axis))
    return single


def _position(line: _Line, axis: str) -> Index | Last | TokenText:
    token = line.peek()
    if token.kind == "num":
        return Index(_integer(line, "an integer"))
    if token.kind == "str" and axis == "pos":
        line.take()
        return TokenText(_string(line, token))
    if token.value == "last" and axis == "pos":
        line.take()
        return Last()
    if token.value in ("prompt", "generated") and axis == "pos":
        line.take()
        return Phase(token.value)
    hint = {
        "pos": "an integer (negative from the end), a..b, [..], *, last, prompt, generated, "
        'or a token text "..."',
        "layer": "an integer, a..b, [..] or *",
        "head": "an integer, a..b, [..] or *",
    }[axis]
    raise line.error(f"bad value {_shown(token)} for {axis}=", token.column, hint=hint)
