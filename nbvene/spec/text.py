"""`Spec` → spec text: the canonical form, which parses back to an equal `Spec`."""

from __future__ import annotations

import json
from decimal import Decimal

from nbvene.spec.ast import (
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
    Span,
    Spec,
    Strengths,
    TokenText,
    Var,
)


def format_spec(spec: Spec) -> str:
    """The canonical text of a spec, one statement a line."""
    rows = []
    if spec.base is not None:
        rows.append(f"base: {_prompts(spec.base)}")
    if spec.source is not None:
        rows.append(f"source: {_prompts(spec.source)}")
    rows += [f"source {s.name}: {_prompts(s.prompts)}" for s in spec.sources]
    if spec.corrupt is not None:
        rows.append(f"corrupt: {_corrupt(spec.corrupt)}")
    rows += [f"{i.verb}: {_intervention(i)}" for i in spec.interventions]
    if spec.metric is not None:
        rows.append(f"metric: {_metric(spec.metric)}")
    if spec.label is not None:
        rows.append("label: {" + spec.label.name + "}")
    if spec.estimate != "exact":
        rows.append(f"estimate: {spec.estimate}")
    if spec.generate is not None:
        rows.append(f"generate: {_generate(spec.generate)}")
    return "\n".join(rows)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _prompts(prompts: Prompts) -> str:
    if isinstance(prompts, Batch):
        return "[" + ", ".join(_prompts(p) for p in prompts.items) + "]"
    if isinstance(prompts, Var):
        return "{" + prompts.name + "}"
    return _quoted(prompts.value)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _corrupt(c: Corrupt) -> str:
    scale = _number(c.scale) + ("σ" if c.relative else "")
    text = f"noise {scale} on {_prompts(c.subject)}"
    if c.samples != 1:
        text += f" samples={c.samples}"
    if c.seed != 0:
        text += f" seed={c.seed}"
    return text


def selector_text(s: Selector) -> str:
    """A selector as written in a spec."""
    match s:
        case Index(value):
            return str(value)
        case Span(start, stop):
            return f"{start}..{stop}"
        case Items(items):
            return "[" + ", ".join(map(str, items)) + "]"
        case All():
            return "*"
        case TokenText(text):
            return _quoted(text)
        case Last():
            return "last"
        case SelectorVar(name):
            return "{" + name + "}"
        case Phase(name):
            return name
        case Mapped(base, source):
            return f"{selector_text(base)}->{selector_text(source)}"
    raise TypeError(f"not a selector: {s!r}")


def _intervention(i: Intervention) -> str:
    parts = [i.component] + [f"{axis}={selector_text(s)}" for axis, s in i.where]
    if i.window is not None:
        parts.append(f"window={i.window}")
    if i.over is not None:
        parts.append(f"over={_prompts(i.over)}")
    if i.by is not None:
        parts.append(_scaled(i.by))
    if isinstance(i.via, Call):
        parts.append(f"via {_call(i.via)}")
    elif i.via is not None:
        parts.append("via {" + i.via.name + "}")
    if i.source is not None:
        parts.append(f"from {i.source}")
    if i.into is not None:
        parts.append(f"into {i.into}")
    return " ".join(parts)


def _scaled(by: Scaled) -> str:
    v = by.vector
    if isinstance(v, Contrast):
        text = f"by {v.method}({_prompts(v.positive)}, {_prompts(v.negative)})"
        text += " normalized" if v.normalized else ""
    else:
        text = "by {" + v.name + "}"
    s = by.scale
    if isinstance(s, Slider):
        return f"{text} * slider({_number(s.low)}, {_number(s.high)}, {_number(s.start)})"
    if isinstance(s, Strengths):
        return f"{text} * [" + ", ".join(_number(x) for x in s.values) + "]"
    return text if s == 1 else f"{text} * {_number(s)}"


def _generate(g: Generate) -> str:
    parts = [] if g.prompt is None else [_prompts(g.prompt)]
    parts.append(f"max_new_tokens={g.max_new_tokens}")
    if g.temperature:
        parts.append(f"temperature={_number(g.temperature)}")
    if g.seed:
        parts.append(f"seed={g.seed}")
    if g.stop:
        parts.append("stop=[" + ", ".join(_quoted(x) for x in g.stop) + "]")
    return " ".join(parts)


def _call(c: Call) -> str:
    def value(v) -> str:
        if isinstance(v, Var):
            return "{" + v.name + "}"
        if isinstance(v, str):
            return _quoted(v)
        if isinstance(v, tuple):
            return "[" + ", ".join(map(str, v)) + "]"
        if isinstance(v, float):  # positional, as the parser reads numbers (no 1e-05)
            text = format(Decimal(repr(v)), "f")
            return text if "." in text else text + ".0"
        return repr(v)

    return c.name + "(" + ", ".join(f"{k}={value(v)}" for k, v in c.args) + ")"


def _metric(m: Metric) -> str:
    text = m.name
    if m.args:
        text += "(" + ", ".join(str(a) if isinstance(a, int) else _quoted(a) for a in m.args) + ")"
    return text + (" normalized" if m.normalized else "")
