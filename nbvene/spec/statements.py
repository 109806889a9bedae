"""The spec's statements, one `Statement` each: how it is read and written back, its help text
(`%nbvene help`), what completion offers after it, and where it is allowed. The parser, the
formatter, the magic's reference and its completion all read `STATEMENTS`.

Adding a statement is one entry here (and a `Spec` field for its value) plus its binding.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, Literal, get_args

from nbvene.errors import did_you_mean
from nbvene.spec import ast, metrics
from nbvene.spec.values import (
    Line,
    Token,
    integer,
    integers,
    listed,
    number,
    number_text,
    prompt,
    prompts,
    prompts_text,
    quoted,
    selector,
    selector_text,
    shown,
    string,
    text,
    var,
    var_text,
)

Mode = Literal["patching", "steering", "training", "discovery"]
"""What runs a spec: `nv.run` (patching), `nv.generate` / a steering `nv.run`, `nv.train`, or
`nv.discover` (a `discover:` spec, also through `nv.run`)."""
MODES: tuple[Mode, ...] = get_args(Mode)
Completes = Literal["", "prompts", "site", "metric", "corruption", "discovery"]
"""What completion offers after a keyword: nothing of its own, `{prompts}`, a site (component,
keys, ranges), a metric's name, the words of `corrupt: noise 3σ on ...`, or those of
`discover: circuit by eap top=...`."""

CONTRASTS = ast.CONTRASTS
DISCOVERIES = ast.DISCOVERIES
ABLATIONS = ast.ABLATIONS
ESTIMATES = ast.ESTIMATES
AXES = ("layer", "pos", "head")
MAX_STRENGTHS = 10_000
"""The most values a strength sweep `a..b step s` may have (each is a steered run)."""


@dataclass(frozen=True)
class Statement:
    """One statement, `keyword: value`."""

    keyword: str
    read: Callable[[Line], Any]
    """Reads the value, the line's cursor after `keyword:`."""
    write: Callable[[Any], str]
    """The value as canonical text (what follows `keyword: `)."""
    summary: str | Callable[[], str]
    """One line of help (a function where it lists what is registered, e.g. the metrics)."""
    example: str
    """Example lines, one or more, for `%nbvene help`."""
    field: str
    """The `Spec` field its value goes to."""
    once: bool = True
    """At most one a spec; the others (the verbs) are collected in order."""
    completes: Completes = ""
    """What completion offers after the keyword (see `Completes`)."""
    allowed: frozenset[Mode] = frozenset({"patching", "training"})
    """Which kinds of run take it (the binders check; this is what they say)."""
    options: tuple[str, ...] = ()
    """A verb's keys besides `layer=`, `pos=`, `head=`."""

    def help(self) -> str:
        return self.summary() if callable(self.summary) else self.summary


# --- base:, source:, label:, estimate: ------------------------------------------------------


def _label(line: Line) -> ast.Var:
    if not line.at("{"):
        token = line.peek()
        raise line.error(
            f"expected {{labels}} after 'label:', found {shown(token)}",
            token.column,
            hint="write: label: {labels}, with labels=... in the namespace",
        )
    return var(line)


def _estimate(line: Line) -> str:
    """`estimate: exact` (the default) or `estimate: attribution` (attribution patching)."""
    token = line.take()
    if token.kind != "ident" or token.value not in ESTIMATES:
        raise line.error(
            f"unknown estimate {shown(token)}",
            token.column,
            hint=did_you_mean(token.value, ESTIMATES) or "write: estimate: attribution",
        )
    return token.value


# --- corrupt: -------------------------------------------------------------------------------


def _corrupt(line: Line) -> ast.Corrupt:
    kind = line.take()
    if kind.value != "noise":
        raise line.error(
            f"unknown corruption {shown(kind)}",
            kind.column,
            hint='write: corrupt: noise 3σ on "subject text"',
        )
    scale = number(line, "a noise scale such as 3σ")
    relative = False
    if line.at("σ") or line.at("sigma"):
        line.take()
        relative = True
    line.expect("on", "'on' and the subject")
    subject = prompt(line)
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
        options[key.value] = integer(line, f"an integer for {key.value}")
    if options["samples"] < 1:
        raise line.error("samples must be at least 1", line.peek().column)
    return ast.Corrupt(scale, subject, relative, options["samples"], options["seed"], line.number)


def _corrupt_text(c: ast.Corrupt) -> str:
    scale = number_text(c.scale) + ("σ" if c.relative else "")
    written = f"noise {scale} on {prompts_text(c.subject)}"
    if c.samples != 1:
        written += f" samples={c.samples}"
    if c.seed != 0:
        written += f" seed={c.seed}"
    return written


# --- metric: --------------------------------------------------------------------------------


def _metric(line: Line) -> ast.Metric:
    name = line.take()
    found = metrics.lookup(name.value) if name.kind == "ident" else None
    if found is None:
        known = metrics.names()
        raise line.error(
            f"unknown metric {shown(name)}",
            name.column,
            hint=did_you_mean(name.value, known) or "metrics: " + ", ".join(known),
        )
    args: list[str | int | ast.Var] = []
    if line.at("("):
        line.take()
        while not line.at(")"):
            token = line.peek()
            if token.kind == "num":  # a token id, or a class index for a classifier
                args.append(integer(line, "a token id"))
            elif token.kind == "str":
                args.append(string(line, line.take()))
            elif line.at("{"):  # a token text or id from the namespace
                args.append(var(line))
            else:
                raise line.error(
                    f'expected a quoted token (" Paris"), a token id or a {{name}}, '
                    f"found {shown(token)}",
                    token.column,
                )
            if not line.at(")"):
                line.expect(",", "',' or ')'")
        line.take()
    normalized = False
    if line.at("normalized"):
        line.take()
        normalized = True
    wanted = found.arity
    if len(args) != wanted:
        raise line.error(
            f"{name.value} takes {wanted} token{'s' if wanted != 1 else ''}, got {len(args)}",
            name.column,
            hint=f"write: metric: {found.example(name.value)}",
        )
    return ast.Metric(found.name, tuple(args), normalized, line.number)


def _metric_argument(a: str | int | ast.Var) -> str:
    if isinstance(a, ast.Var):
        return var_text(a)
    return str(a) if isinstance(a, int) else quoted(a)


def _metric_text(m: ast.Metric) -> str:
    written = m.name
    if m.args:
        written += "(" + ", ".join(_metric_argument(a) for a in m.args)
        written += ")"
    return written + (" normalized" if m.normalized else "")


# --- generate: ------------------------------------------------------------------------------

_GENERATE = ("max_new_tokens", "temperature", "seed", "stop")


def _generate(line: Line) -> ast.Generate:
    """`generate: ["prompt"] max_new_tokens=30 temperature=0.7 seed=1 stop="\\n"`."""
    written = None
    if line.peek().kind == "str" or line.at("{"):
        written = prompt(line)
    options: dict = {}
    while line.peek().kind != "end":
        key = line.take()
        if key.kind != "ident" or key.value not in _GENERATE:
            raise line.error(
                f"unknown option {shown(key)} for generate",
                key.column,
                hint=did_you_mean(key.value, _GENERATE)
                or "options: " + ", ".join(k + "=" for k in _GENERATE),
            )
        if key.value in options:
            raise line.error(f"{key.value} given twice", key.column)
        line.expect("=", "'='")
        if key.value == "stop":
            options["stop"] = listed(line, _stop) if line.at("[") else (_stop(line),)
        elif key.value == "temperature":
            options["temperature"] = number(line, "a temperature such as 0.7 (0: greedy)")
        else:
            options[key.value] = integer(line, f"an integer for {key.value}")
    if options.get("max_new_tokens", 1) < 1:
        raise line.error("max_new_tokens must be at least 1", 0)
    if options.get("temperature", 0) < 0:
        raise line.error("temperature must be 0 (greedy) or more", 0)
    return ast.Generate(written, **options, line=line.number)


def _stop(line: Line) -> str:
    """A string that ends a generated text."""
    column = line.peek().column
    stop = text(line, "a stop string")
    if not stop:
        raise line.error(
            'stop="" would end every text before its first token',
            column,
            hint='give the text that ends a generation, e.g. stop="\\n"',
        )
    return stop


def _generate_text(g: ast.Generate) -> str:
    parts = [] if g.prompt is None else [prompts_text(g.prompt)]
    parts.append(f"max_new_tokens={g.max_new_tokens}")
    if g.temperature:
        parts.append(f"temperature={number_text(g.temperature)}")
    if g.seed:
        parts.append(f"seed={g.seed}")
    if g.stop:
        parts.append("stop=[" + ", ".join(quoted(x) for x in g.stop) + "]")
    return " ".join(parts)


# --- discover: -----------------------------------------------------------------------------

DISCOVER_OPTIONS = {
    "eap": ("top", "threshold", "ablation"),
    "eap-ig": ("top", "threshold", "steps", "ablation"),
    "acdc": ("tau", "ablation"),
}
"""The options each method takes (`top=` or `threshold=` keep the best-scored edges; ACDC
keeps what it cannot remove within `tau=`; `steps=` are EAP-IG's interpolation steps)."""
_DISCOVER_EXAMPLE = "discover: circuit by eap top=200"
_WORD = re.compile(r"\s*([^\s=]+)")


def _discover(line: Line) -> ast.Discover:
    """`circuit by METHOD key=value ...` or `circuit of [edges] ablation=...`: the method and
    the edges are read raw (`eap-ig` and `a0.h1 -> logits` are not tokens), the options as
    tokens."""
    words = []
    for what in ("circuit", "by", "a method"):
        m = _WORD.match(line.code, line.start)
        found = m.group(1) if m else ""
        column = m.start(1) if m else len(line.code.rstrip())
        if what == "by" and (found == "of" or found.startswith("of[")):
            line.start = m.start(1) + 2
            return _given(line)
        if what == "a method":
            if found not in DISCOVERIES:
                raise line.error(
                    f"unknown discovery method {found!r}" if found else "discover: needs a method",
                    column,
                    hint=did_you_mean(found, DISCOVERIES)
                    or "methods: " + ", ".join(DISCOVERIES) + f"; write: {_DISCOVER_EXAMPLE}",
                )
        elif found != what:
            written = repr(found) if found else "end of line"
            raise line.error(
                f"expected {what!r}, found {written}", column, hint=f"write: {_DISCOVER_EXAMPLE}"
            )
        words.append(found)
        line.start = m.end()
    method = words[-1]
    takes = DISCOVER_OPTIONS[method]
    options: dict = {}
    columns: dict = {}
    while line.peek().kind != "end":
        key = line.take()
        every = ("top", "threshold", "tau", "steps", "ablation")
        if key.kind != "ident" or key.value not in every:
            raise line.error(
                f"unknown option {shown(key)} for discover",
                key.column,
                hint=did_you_mean(key.value, every)
                or f"{method} takes " + ", ".join(k + "=" for k in takes),
            )
        if key.value in options:
            raise line.error(f"{key.value} given twice", key.column)
        if key.value not in takes:
            raise line.error(
                f"by {method} takes no {key.value}=",
                key.column,
                hint=_OPTION_HINTS[key.value]
                + f"; {method} takes "
                + ", ".join(k + "=" for k in takes),
            )
        line.expect("=", "'='")
        columns[key.value] = key.column
        value = line.peek()
        if key.value in ("top", "steps"):
            options[key.value] = integer(line, f"a whole number for {key.value}")
            if options[key.value] < 1:
                raise line.error(f"{key.value} must be at least 1", value.column)
        elif key.value == "ablation":
            options["ablation"] = _ablation(line)
        else:
            options[key.value] = number(line, f"a number for {key.value}")
            if options[key.value] < 0:
                raise line.error(f"{key.value} must be 0 or more", value.column)
    if "top" in options and "threshold" in options:
        raise line.error(
            "top and threshold together",
            columns["threshold"],
            hint="keep the top-k edges (top=200) or those scoring over a threshold, not both",
        )
    return ast.Discover(method, **options, line=line.number)


_EDGE = re.compile(r"(embed|a\d+\.h\d+|m\d+) -> (a\d+\.h\d+\.[qkv]|m\d+|logits)")
"""An edge's name (`nbvene.circuits.graph.Edge.name`): sender -> receiver[.port]."""


def _given(line: Line) -> ast.Discover:
    """`of [embed -> a0.h1.q, a0.h1 -> logits] ablation=mean`, the cursor after `of`."""
    m = re.compile(r"\s*\[([^\]]*)\]").match(line.code, line.start)
    if not m:
        raise line.error(
            "expected [edges] after 'of'",
            line.start + 1,
            hint="write: discover: circuit of [embed -> a0.h1.q, a0.h1 -> logits]",
        )
    edges = []
    column = m.start(1)
    for part in m.group(1).split(",") if m.group(1).strip() else ():
        name = " ".join(part.split())
        if not _EDGE.fullmatch(name):
            raise line.error(
                f"{name!r} is not an edge" if name else "an empty edge",
                column + len(part) - len(part.lstrip()),
                hint="edges are named as Circuit.kept names them: embed -> a0.h1.q, "
                "a0.h1 -> m1, m1 -> logits",
            )
        if name in edges:
            raise line.error(f"the edge {name!r} given twice", column)
        edges.append(name)
        column += len(part) + 1
    line.start = m.end()
    ablation = "corrupted"
    if line.peek().kind != "end":
        key = line.take()
        if key.value != "ablation":
            raise line.error(
                f"unknown option {shown(key)} for 'circuit of'",
                key.column,
                hint="a given circuit takes ablation= only",
            )
        line.expect("=", "'='")
        ablation = _ablation(line)
    return ast.Discover("given", ablation=ablation, edges=tuple(edges), line=line.number)


def _ablation(line: Line) -> ast.Ablation:
    word = line.take()
    if word.value not in ABLATIONS or word.kind != "ident":
        raise line.error(
            f"unknown ablation {shown(word)}",
            word.column,
            hint="ablation=corrupted (the source run's outputs, the default) "
            "or ablation=mean (their mean over the base prompts)",
        )
    return word.value


_OPTION_HINTS = {
    "top": "top= keeps the best-scored edges of eap and eap-ig (acdc keeps what it cannot remove)",
    "threshold": "threshold= keeps the edges of eap and eap-ig scoring over it",
    "tau": "tau= is how far acdc lets the metric move: write 'by acdc tau=0.02'",
    "steps": "steps= are eap-ig's interpolation steps: write 'by eap-ig steps=5'",
}


def _discover_text(d: ast.Discover) -> str:
    if d.method == "given":
        written = "circuit of [" + ", ".join(d.edges) + "]"
        return written + ("" if d.ablation == "corrupted" else f" ablation={d.ablation}")
    parts = [f"circuit by {d.method}"]
    for key in ("top", "threshold", "tau", "steps"):
        value = getattr(d, key)
        if value is not None:
            parts.append(f"{key}={value if isinstance(value, int) else number_text(value)}")
    if d.ablation != "corrupted":
        parts.append(f"ablation={d.ablation}")
    return " ".join(parts)


# --- the verbs: patch:, restore:, add:, ... -------------------------------------------------

# Multi-source: the verbs that read a source take `from s1`; any verb but collect may act on a
# named source's run instead of the base with `into s2`.
_FROM = ("patch", "restore", "add", "subtract")


def _edit(verb: str, line: Line) -> ast.Edit:
    component = line.word(verb, f"{verb}: block_output layer=* pos=-1")
    takes = STATEMENTS[verb].options
    where: dict[str, ast.Selector] = {}
    options: dict = {}
    while line.peek().kind != "end":
        key = line.take()
        if key.kind != "ident":
            raise line.error(f"expected 'key=value', found {shown(key)}", key.column)
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
        if key.value not in AXES and key.value not in takes:
            said = ", ".join(takes) or "no options"
            raise line.error(
                f"{verb}: takes no {key.value!r}", key.column, hint=f"{verb}: takes {said}"
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
            options["window"] = integer(line, "a window size such as 10")
            if options["window"] < 1:
                raise line.error("window must be at least 1", key.column)
        elif key.value == "over":
            options["over"] = prompts(line)
        else:
            where[key.value] = selector(line, key.value)
    if "by" in options and "via" in options:
        raise line.error(f"{verb}: by and via together", 0, hint="give one or the other")
    if "from" in options and "by" in options:
        raise line.error(f"{verb}: by and from together", 0, hint="give one or the other")
    if verb == "steer" and "by" not in options:
        raise line.error(
            "steer: needs a vector", line.peek().column, hint="write: steer: ... by {vector} * 2"
        )
    return ast.Edit(
        verb,
        component,
        tuple(where.items()),
        options.get("window"),
        options.get("by"),
        options.get("over"),
        options.get("via"),
        line=line.number,
        source=options.get("from"),
        into=options.get("into"),
    )


def _run_name(verb: str, key: Token, line: Line, options: dict) -> None:
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
            f"expected a source name after {key.value!r}, found {shown(name)}",
            name.column,
            hint=f'name a source line: source s1: "..." and write {key.value} s1',
        )
    options[key.value] = name.value


def _via(line: Line) -> ast.Var | ast.Call:
    """`via {f}`, or `via rotated(k=1, dims=[0, 2])`: a named intervention with its arguments."""
    if line.at("{"):
        return var(line)
    name = line.take()
    if name.kind != "ident" or not line.at("("):
        raise line.error(
            f"expected {{f}} or an intervention such as rotated(k=1) after 'via', "
            f"found {shown(name)}",
            name.column,
            hint="write: via {f}  or  via rotated(k=1)",
        )
    line.take()
    args: dict[str, object] = {}
    while not line.at(")"):
        key = line.take()
        if key.kind != "ident":
            raise line.error(f"expected 'key=value', found {shown(key)}", key.column)
        if key.value in args:
            raise line.error(f"{key.value} given twice", key.column)
        line.expect("=", "'='")
        args[key.value] = _argument(line)
        if not line.at(")"):
            line.expect(",", "',' or ')'")
    line.take()
    return ast.Call(name.value, tuple(args.items()))


def _argument(line: Line) -> object:
    """An argument of `via name(...)`: a number, a quoted string, [integers] or {name}."""
    token = line.peek()
    if token.kind == "num":
        if "." in token.value:
            return number(line, "a number")
        return integer(line, "an integer")
    if line.at("["):
        return integers(line)
    if token.kind == "str" or line.at("{"):
        written = prompt(line)
        return written.value if isinstance(written, ast.Text) else written
    raise line.error(
        f"expected a value, found {shown(token)}",
        token.column,
        hint="a number, a quoted string, a list [0, 1] or a {name}",
    )


def _scaled(line: Line) -> ast.Scaled:
    """`by {v}`, `by mean_diff({kind}, {cruel}) normalized`, then `* 2`, `* slider(-4, 4, 1)`,
    `* 0..8 step 2` or `* [0, 1, 2]`."""
    token = line.peek()
    if line.at("{"):
        vector = var(line)
    elif token.kind == "ident" and token.value in CONTRASTS:
        vector = _contrast(line)
    else:
        raise line.error(
            f"expected a {{vector}} or mean_diff(...) after 'by', found {shown(token)}",
            token.column,
            hint="write: by {vector} * 2  or  by mean_diff({positive}, {negative}) * 2",
        )
    scale: float | ast.Slider | ast.Strengths = 1.0
    if line.at("*"):
        line.take()
        scale = _strength(line)
    return ast.Scaled(vector, scale)


def _contrast(line: Line) -> ast.Contrast:
    """`mean_diff({kind}, {cruel})`, `pca(...)` or `diff("Love", "Hate")`, then `normalized`."""
    method = line.take().value
    line.expect("(", f"'(' after {method}")
    positive = prompts(line)
    line.expect(",", "',' and the negative prompts")
    negative = prompts(line)
    line.expect(")", "')'")
    normalized = line.at("normalized")
    if normalized:
        line.take()
    return ast.Contrast(method, positive, negative, normalized)


def _strength(line: Line) -> float | ast.Slider | ast.Strengths:
    """After `*`: a number, `slider(lo, hi, start)`, `a..b step s` or `[a, b, c]`."""
    token = line.peek()
    if token.value == "slider" and token.kind == "ident":
        line.take()
        line.expect("(", "'(' after slider")
        low = number(line, "the slider's low end")
        line.expect(",", "','")
        high = number(line, "the slider's high end")
        line.expect(",", "','")
        start = number(line, "the slider's start value")
        line.expect(")", "')'")
        if not low <= start <= high:
            raise line.error(
                f"slider({low:g}, {high:g}, {start:g}): the start is not between the ends",
                token.column,
                hint="write slider(low, high, start) with low <= start <= high",
            )
        return ast.Slider(low, high, start)
    if line.at("["):
        return ast.Strengths(listed(line, lambda line: number(line, "a strength")))
    value = number(line, "a number, slider(lo, hi, start) or a sweep 0..8 step 2 after '*'")
    if line.peek().kind != "dots":
        return value
    line.take()
    stop = number(line, "the end of the strength sweep")
    step = 1.0
    if line.at("step"):
        line.take()
        step = number(line, "a step such as 2")
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
    return ast.Strengths(tuple(round(value + k * step, 9) for k in range(count)))


def _edit_text(i: ast.Edit) -> str:
    parts = [i.component] + [f"{axis}={selector_text(s)}" for axis, s in i.where]
    if i.window is not None:
        parts.append(f"window={i.window}")
    if i.over is not None:
        parts.append(f"over={prompts_text(i.over)}")
    if i.by is not None:
        parts.append(_scaled_text(i.by))
    if isinstance(i.via, ast.Call):
        parts.append(f"via {_call_text(i.via)}")
    elif i.via is not None:
        parts.append("via " + var_text(i.via))
    if i.source is not None:
        parts.append(f"from {i.source}")
    if i.into is not None:
        parts.append(f"into {i.into}")
    return " ".join(parts)


def _scaled_text(by: ast.Scaled) -> str:
    v = by.vector
    if isinstance(v, ast.Contrast):
        written = f"by {v.method}({prompts_text(v.positive)}, {prompts_text(v.negative)})"
        written += " normalized" if v.normalized else ""
    else:
        written = "by " + var_text(v)
    s = by.scale
    if isinstance(s, ast.Slider):
        ends = ", ".join(number_text(x) for x in (s.low, s.high, s.start))
        return f"{written} * slider({ends})"
    if isinstance(s, ast.Strengths):
        return f"{written} * [" + ", ".join(number_text(x) for x in s.values) + "]"
    return written if s == 1 else f"{written} * {number_text(s)}"


def _call_text(c: ast.Call) -> str:
    def value(v) -> str:
        if isinstance(v, ast.Var):
            return var_text(v)
        if isinstance(v, str):
            return quoted(v)
        if isinstance(v, tuple):
            return "[" + ", ".join(map(str, v)) + "]"
        if isinstance(v, float):  # positional, as the parser reads numbers (no 1e-05)
            written = format(Decimal(repr(v)), "f")
            return written if "." in written else written + ".0"
        return repr(v)

    return c.name + "(" + ", ".join(f"{k}={value(v)}" for k, v in c.args) + ")"


def _verb(
    verb: str,
    summary: str,
    example: str,
    options: tuple[str, ...],
    allowed: tuple[Mode, ...] = ("patching", "training"),
) -> Statement:
    """A verb's statement: `verb: component key=value ...`, read into an `Edit`."""
    return Statement(
        verb,
        partial(_edit, verb),
        _edit_text,
        summary,
        example,
        "interventions",
        once=False,
        completes="site",
        allowed=frozenset(allowed),
        options=options,
    )


_ALL: tuple[Mode, ...] = ("patching", "steering", "training")
_READS: tuple[Mode, ...] = (*_ALL, "discovery")
"""The statements every kind of run reads: base: and metric:."""

STATEMENTS: dict[str, Statement] = {
    s.keyword: s
    for s in (
        Statement(
            "base",
            prompts,
            prompts_text,
            "the run that is intervened on: a prompt, a {variable}, or a list (a batch)",
            'base: "The Eiffel Tower is located in the city of"\nbase: {prompts}',
            "base",
            completes="prompts",
            allowed=frozenset(_READS),
        ),
        Statement(
            "source",
            prompts,
            prompts_text,
            "where patched activations come from: one prompt, or one per base prompt",
            'source: "The Colosseum is located in the city of"',
            "source",
            completes="prompts",
            allowed=frozenset({"patching", "training", "discovery"}),
        ),
        Statement(
            "discover",
            _discover,
            _discover_text,
            "find the circuit (edges between heads, MLPs, embedding, logits) that carries the "
            "metric from base (clean) to source (corrupted): eap top=100, eap-ig steps=5, "
            "acdc tau=0.02 by default; ablation=corrupted|mean; 'circuit of [edges]' checks "
            "a given one",
            "discover: circuit by eap top=200\n"
            "discover: circuit by eap-ig steps=5 threshold=0.05 ablation=mean\n"
            "discover: circuit by acdc tau=0.02\n"
            "discover: circuit of [embed -> a0.h1.q, a0.h1 -> logits]",
            "discover",
            completes="discovery",
            allowed=frozenset({"discovery"}),
        ),
        Statement(
            "corrupt",
            _corrupt,
            _corrupt_text,
            "ROME: Gaussian noise on the subject's embeddings; the clean base is the source",
            'corrupt: noise 3σ on "The Eiffel Tower" samples=3 seed=0',
            "corrupt",
            completes="corruption",
            allowed=frozenset({"patching"}),
        ),
        _verb(
            "patch",
            "take the source's activation at the site",
            "patch: block_output layer=* pos=-1\npatch: z layer=* head=* pos=-1",
            ("window", "via"),
        ),
        _verb(
            "restore",
            "the same as patch, in causal-tracing words (restore the clean activation)",
            "restore: block_output layer=* pos=*",
            ("window", "via"),
        ),
        _verb(
            "add",
            "add a vector (times a number), or the source's activation",
            "add: block_output layer=6 pos=-1 by {steer} * 4",
            ("window", "by", "via"),
            _ALL,
        ),
        _verb(
            "subtract",
            "subtract a vector, or the source's activation",
            "subtract: mlp_output layer=*",
            ("window", "by", "via"),
            _ALL,
        ),
        _verb("zero", "zero-ablate the units", "zero: z layer=* head=*", ("window", "via"), _ALL),
        _verb(
            "mean",
            "mean-ablate: the units' mean over the over= prompts (or the base)",
            "mean: mlp_output layer=* pos=* over={reference}",
            ("window", "over", "via"),
        ),
        _verb(
            "collect",
            "return the activations instead of a metric",
            "collect: mlp_activation layer=3..5 pos=-1",
            (),
            ("patching",),
        ),
        _verb(
            "steer",
            "add a steering vector while generating (pos=* every position, prompt, generated)",
            "steer: block_output layer=12 by mean_diff({kind}, {cruel}) * slider(-4, 4, 1)\n"
            "steer: block_output layer=12 pos=generated by {v} * 0..8 step 2",
            ("by",),
            ("steering",),
        ),
        Statement(
            "metric",
            _metric,
            _metric_text,
            lambda: (
                "what to measure at the next token: "
                + ", ".join(metrics.names())
                + "; normalized: clean 1"
            ),
            'metric: p(" Paris")\nmetric: logit_diff(" Mary", " John") normalized',
            "metric",
            completes="metric",
            allowed=frozenset(_READS),
        ),
        Statement(
            "label",
            _label,
            var_text,
            "the target outputs nv.train fits trainable interventions to",
            "label: {labels}",
            "label",
            allowed=frozenset({"training"}),
        ),
        Statement(
            "estimate",
            _estimate,
            str,
            "exact (the default), or attribution: a patch/restore sweep from one backward pass",
            "estimate: attribution",
            "estimate",
            allowed=frozenset({"patching"}),
        ),
        Statement(
            "generate",
            _generate,
            _generate_text,
            "generate text, baseline and steered side by side (greedy unless temperature=)",
            'generate: "I think that you are" max_new_tokens=30 stop="\\n"',
            "generate",
            allowed=frozenset({"steering"}),
        ),
    )
}
"""Every statement, in the order the canonical text writes them."""

KEYWORDS = tuple(STATEMENTS)
