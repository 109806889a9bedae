"""Tab completion in the kernel: inside a `%%intervene` cell (statements, the model's components,
`key=` words, `layer=`/`head=` ranges, `{variables}`) and on the magic lines (options, models).

IPython hands custom matchers the whole cell (ipykernel does since IPython 8.6), so the body
knows its magic line and thus its model. `complete` is a pure function of the text; `matcher`
wraps it in IPython's matcher API.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from nbvene.magics.cell import FLAGS, VALUED
from nbvene.sites import ALIASES, SiteMap
from nbvene.spec import KEYWORDS, STATEMENTS
from nbvene.spec.metrics import lookup, names
from nbvene.spec.statements import ABLATIONS, DISCOVER_OPTIONS

COMMANDS = ("use", "sites", "config", "debug", "help")
_VARIABLES = {"prompts": "prompt", "corruption": "text"}
"""What a `{name}` stands for after a statement, by what the statement `completes`."""
_KEYS = {"window": "window=", "over": "over=", "by": "by {", "via": "via {"}
"""How completion offers a verb's options."""


@dataclass(frozen=True)
class Completions:
    """Candidates for the `fragment` that ends just before the cursor."""

    fragment: str
    words: tuple[str, ...]
    kind: str

    @classmethod
    def of(cls, fragment: str, words, kind: str) -> Completions:
        seen = dict.fromkeys(w for w in words if w.startswith(fragment) and w != fragment)
        return cls(fragment, tuple(seen), kind)


@dataclass
class Context:
    """What completion may look at: the user's variables and how to find a cell's model."""

    namespace: Mapping
    hidden: Callable[[str], bool]
    model_of: Callable[[str | None], nn.Module | None]
    """The model a cell uses, from the name on its magic line (None: the default)."""
    sites_of: Callable[[nn.Module], SiteMap | None]

    def names(self, kind: str) -> list[str]:
        """Visible variables whose values fit `kind` (see `_fits`)."""
        return sorted(
            name
            for name, value in list(self.namespace.items())
            if not self.hidden(name) and fits(value, kind)
        )


def complete(text: str, line: int, column: int, ctx: Context) -> Completions | None:
    """Completions at (line, column) of a cell's text, or None where nbvene has nothing to say."""
    lines = text.split("\n")
    current = lines[line][:column]
    if current.lstrip().startswith("%nbvene"):
        return _nbvene_line(current.lstrip()[len("%nbvene") :], ctx)
    first = next((i for i, t in enumerate(lines) if t.strip()), None)
    if first is None or not lines[first].lstrip().startswith("%%intervene"):
        return None
    head = lines[first].lstrip()[len("%%intervene") :]
    if line == first:
        return _magic_line(current.lstrip()[len("%%intervene") :], ctx)
    if line < first:
        return None
    return _body(current, ctx, _model_name(head))


# --- magic lines ----------------------------------------------------------------------------------


def _words(text: str) -> tuple[list[str], str]:
    """The finished words before the cursor, and the one being written."""
    words = text.split()
    if not text or text[-1].isspace():
        return words, ""
    return words[:-1], words[-1]


def _magic_line(text: str, ctx: Context) -> Completions | None:
    if not text or not text[0].isspace():
        return None  # still writing the magic's own name
    words, fragment = _words(text.replace("<<", " << "))
    if "<<" in words:
        words = words[words.index("<<") + 1 :]
    previous = words[-1] if words else None
    if previous in ("-t", "--tokenizer"):
        return Completions.of(fragment, ctx.names("tokenizer"), "variable")
    if previous == "--device":
        return Completions.of(fragment, _devices(), "value")
    if previous == "--sites":
        return Completions.of(fragment, ctx.names("mapping"), "variable")
    if previous in VALUED:
        return Completions.of(fragment, (), "value")
    if fragment.startswith("-"):
        return Completions.of(fragment, [f for f in FLAGS if f not in words], "option")
    positional = _positionals(words)
    if "=" in fragment:
        key, _, value = fragment.partition("=")
        if key == "tokenizer":
            found = Completions.of(value, ctx.names("tokenizer"), "variable")
            return Completions(fragment, tuple(f"{key}={w}" for w in found.words), "variable")
        return None
    names = ctx.names("model") if not positional else ctx.names("tokenizer")
    if len(positional) >= 2:
        names = []
    options = [f for f in FLAGS if f.startswith("--") and f not in words] if not fragment else []
    return Completions.of(fragment, [*names, *options], "variable")


def _positionals(words: list[str]) -> list[str]:
    found, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in VALUED:
            skip = True
        elif not word.startswith("-") and "=" not in word:
            found.append(word)
    return found


def _model_name(head: str) -> str | None:
    """The model a magic line names (its first positional word), if any."""
    words = head.replace("<<", " << ").split()
    if "<<" in words:
        words = words[words.index("<<") + 1 :]
    positional = _positionals(words)
    return positional[0] if positional else None


def _nbvene_line(text: str, ctx: Context) -> Completions | None:
    if not text or not text[0].isspace():
        return None
    words, fragment = _words(text)
    if not words:
        return Completions.of(fragment, COMMANDS, "command")
    command = words[0]
    if command == "use":
        kind = "model" if len(words) == 1 else "tokenizer" if len(words) == 2 else None
        return Completions.of(fragment, ctx.names(kind) if kind else (), "variable")
    if command == "sites" and len(words) == 1:
        return Completions.of(fragment, ctx.names("model"), "variable")
    if command == "debug" and len(words) == 1:
        return Completions.of(fragment, ("on", "off"), "value")
    if command == "help" and len(words) == 1:
        return Completions.of(fragment, KEYWORDS, "keyword")
    return Completions.of(fragment, (), "value")


# --- the spec -------------------------------------------------------------------------------------


_STATEMENT = re.compile(r"^\s*(?:[A-Za-z_]\w*\s*<<\s*)?(\w*)$")
_KEYWORD = re.compile(r"^\s*(?:[A-Za-z_]\w*\s*<<\s*)?([A-Za-z_]\w*)\s*:(.*)$")


def _body(current: str, ctx: Context, model_name: str | None) -> Completions | None:
    code = _code(current)
    if code is None:
        return None  # in a comment or a string
    m = _STATEMENT.match(code)
    if m:
        return Completions.of(m.group(1), [k + ":" for k in KEYWORDS], "keyword")
    m = _KEYWORD.match(code)
    if not m:
        return None
    keyword, rest = m.group(1), m.group(2)
    statement = STATEMENTS.get(keyword)
    completes = statement.completes if statement is not None else ""
    var = re.search(r"\{(\w*)$", rest)
    if var:
        kind = _VARIABLES.get(completes, "any")
        by = re.search(r"\b(by|via)\s*\{\w*$", rest)
        if by:
            kind = "vector" if by.group(1) == "by" else "callable"
        key = re.search(r"\b(layer|pos|head|over)=\{\w*$", rest)
        if key:
            kind = "prompt" if key.group(1) == "over" else "index"
        names = ctx.names(kind)
        return Completions.of("{" + var.group(1), ["{" + n + "}" for n in names], "variable")
    if completes == "site":
        return _edit(keyword, rest, ctx, model_name)
    if completes == "metric":
        return _metric(rest)
    if completes == "corruption":
        return _corruption(rest)
    if completes == "discovery":
        return _discovery(rest)
    return None


def _metric(rest: str) -> Completions | None:
    """A metric's name (with its `(` where it takes tokens), then `normalized`."""
    m = re.match(r"^\s*(\w*)$", rest)
    if m:
        written = [n + ("(" if lookup(n).arity else "") for n in names()]
        return Completions.of(m.group(1), written, "metric")
    m = re.search(r"\)\s+(\w*)$", rest)
    if m:
        return Completions.of(m.group(1), ["normalized"], "keyword")
    m = re.match(r"^\s*(\w+)\s+(\w*)$", rest)  # after a metric without tokens: kl
    found = lookup(m.group(1)) if m else None
    if found is None or found.arity:
        return None
    return Completions.of(m.group(2), ["normalized"], "keyword")


def _corruption(rest: str) -> Completions | None:
    """`noise 3σ on "subject" samples= seed=`, one word at a time."""
    words, fragment = _words(rest)
    if not words:
        return Completions.of(fragment, ["noise"], "keyword")
    if len(words) == 1:
        return Completions.of(fragment, ["3σ"], "value")
    if len(words) == 2:
        return Completions.of(fragment, ["on"], "keyword")
    if words[-1].endswith('"') or words[-1].endswith("}"):
        return Completions.of(fragment, ["samples=", "seed="], "keyword")
    return None


def _discovery(rest: str) -> Completions | None:
    """`circuit by METHOD`, then the method's options and `ablation=`'s values."""
    words, fragment = _words(rest)
    if not words:
        return Completions.of(fragment, ["circuit"], "keyword")
    if len(words) == 1:
        return Completions.of(fragment, ["by"], "keyword")
    if len(words) == 2:
        return Completions.of(fragment, list(DISCOVER_OPTIONS), "value")
    if fragment.startswith("ablation="):
        return Completions.of(fragment, [f"ablation={a}" for a in ABLATIONS], "value")
    used = {w.split("=")[0] for w in words[3:]}
    takes = DISCOVER_OPTIONS.get(words[2], ())
    if {"top", "threshold"} & used:
        used |= {"top", "threshold"}
    return Completions.of(fragment, [k + "=" for k in takes if k not in used], "keyword")


def _code(line: str) -> str | None:
    """The line without a finished string's insides; None in a comment or an open string."""
    quoted = escaped = False
    out = []
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return None
        out.append(ch if not quoted or ch == '"' else "_")
    return None if quoted else "".join(out)


def _edit(verb: str, rest: str, ctx: Context, model_name: str | None) -> Completions | None:
    model = ctx.model_of(model_name)
    sites = ctx.sites_of(model) if model is not None else None
    m = re.match(r"^\s*([^\s=]*)$", rest)
    if m:  # the component
        fragment = m.group(1)
        if sites is None:
            return Completions.of(fragment, (), "component")
        if "." in fragment or "[" in fragment:
            modules = [n for n, _ in model.named_modules() if n]
            paths = [f"{n}.{io}" for n in modules for io in ("input", "output")]
            return Completions.of(fragment, paths, "module")
        names = sites.components()
        aliases = [a for a, c in ALIASES.items() if c in names]
        return Completions.of(fragment, [*names, *aliases], "component")
    component = re.match(r"^\s*(\S+)", rest).group(1)
    m = re.search(r"\b(layer|head|pos)=([^\s]*)$", rest)
    if m:
        key, fragment = m.groups()
        return Completions.of(fragment, _values(key, component, sites), "value")
    m = re.search(r"\s(\w*)$", rest)
    if not m:
        return None
    used = set(re.findall(r"\b(\w+)(?:=|\s*\{)", rest))
    keys = ["layer=", "pos=", "head="]
    if sites is not None and not _by_head(sites, component):
        keys.remove("head=")
    keys += [_KEYS[option] for option in STATEMENTS[verb].options]
    keys = [k for k in keys if k.rstrip("={ ") not in used]
    return Completions.of(m.group(1), keys, "keyword")


def _by_head(sites: SiteMap, component: str) -> bool:
    try:
        return sites.heads(sites.resolve(component)) is not None
    except Exception:  # an unknown component: the run will say so
        return True


def _values(key: str, component: str, sites: SiteMap | None) -> list[str]:
    if key == "pos":
        return ["-1", "last", "*"]
    if sites is None:
        return ["*"]
    if key == "layer":
        n = sites.n_layers or 0
        halves = [f"0..{n // 2 - 1}", f"{n // 2}..{n - 1}"] if n >= 4 else []
        return ["*", f"0..{n - 1}", *halves] if n > 1 else ["*"]
    try:
        heads = sites.heads(sites.resolve(component))
    except Exception:
        heads = None
    return ["*", f"0..{heads - 1}"] if heads else ["*"]


def _devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


# --- what a variable can be -----------------------------------------------------------------------


def fits(value, kind: str) -> bool:
    """Whether a variable's value can be a `kind`: model, tokenizer, mapping, text, prompt,
    vector, callable, index, or (any) something a `{name}` can stand for."""
    if isinstance(value, type) or type(value).__name__ == "module":
        return False
    if kind == "model":  # a torch model, or an nnsight one (nv.run runs it through nnsight)
        nnsight = type(value).__module__.split(".")[0] == "nnsight"
        return isinstance(value, nn.Module) or (
            nnsight and isinstance(getattr(value, "_module", None), nn.Module)
        )
    if kind == "tokenizer":
        return _is_tokenizer(value)
    if kind == "mapping":  # what nv.run's sites= takes
        return isinstance(value, SiteMap) or (
            isinstance(value, dict) and all(isinstance(k, str) for k in value)
        )
    if kind == "text":
        return isinstance(value, str)
    if kind == "prompt":
        if isinstance(value, str):
            return True
        if isinstance(value, list | tuple):
            return bool(value) and all(isinstance(v, str) for v in value)
        return isinstance(value, torch.Tensor) and not value.is_floating_point()
    if kind == "vector":
        from nbvene.steer import Vector

        return isinstance(value, Vector) or (
            isinstance(value, torch.Tensor) and value.is_floating_point()
        )
    if kind == "callable":  # a function or an intervention module, not a whole model
        return callable(value) and not _is_tokenizer(value) and not hasattr(value, "config")
    if kind == "index":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        return (
            isinstance(value, list | tuple)
            and bool(value)
            and all(isinstance(v, int | list | tuple) for v in value)
        )
    return any(fits(value, k) for k in ("prompt", "vector", "index", "callable"))


def _is_tokenizer(value) -> bool:
    from transformers import PreTrainedTokenizerBase

    return isinstance(value, PreTrainedTokenizerBase)


# --- IPython's side -------------------------------------------------------------------------------


def matcher(ctx: Context):
    """A matcher for `IPCompleter.custom_matchers` (API v2: it sees the whole cell)."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    @context_matcher(identifier="nbvene", priority=100)
    def nbvene_matcher(context):
        found = complete(context.full_text, context.cursor_line, context.cursor_position, ctx)
        if found is None:
            return {"completions": [], "suppress": False}
        return {
            "completions": [SimpleCompletion(w, type=found.kind) for w in found.words],
            "matched_fragment": found.fragment,
            "suppress": True,
            "ordered": True,  # statements in spec order, variables before options
        }

    return nbvene_matcher
