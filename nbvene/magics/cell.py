"""One `%%intervene` cell: its magic line (model, options), its body (`NAME <<`, then the spec),
the equivalent Python call, and errors shown as a few lines instead of a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
from dataclasses import dataclass

from nbvene.bind.limits import MAX_CELLS
from nbvene.errors import NbveneError, did_you_mean
from nbvene.spec import SelectorVar, Spec, Var

_CAPTURE = re.compile(r"^\s*([A-Za-z_]\w*)\s*<<\s*")


class CellError(NbveneError):
    """An `NbveneError` that IPython shows as its message alone (line, caret, hint): IPython
    and ipykernel call `_render_traceback_` instead of formatting the Python traceback."""

    colour: bool = False

    @classmethod
    def of(cls, e: NbveneError, *, colour: bool = False) -> CellError:
        shown = cls(e.message, line=e.line, text=e.text, column=e.column, hint=e.hint)
        shown.colour = colour
        return shown

    def _render_traceback_(self) -> list[str]:
        name, caret = "NbveneError", "^"
        if self.colour:
            name, caret = f"\x1b[1;31m{name}\x1b[0m", f"\x1b[1;31m{caret}\x1b[0m"
        first, *rest = str(self).splitlines()
        if self.column is not None and self.text is not None:
            rest = [caret.join(r.rsplit("^", 1)) if r.strip() == "^" else r for r in rest]
        return [f"{name}: {first}", *rest]


# --- the magic line ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What the `%%intervene` line says; None where it says nothing (the configured default)."""

    model: str | None = None
    tokenizer: str | None = None
    out: str | None = None
    device: str | None = None
    max_batch: int | None = None
    max_memory: str | None = None
    max_cells: int | None = None
    sites: str | None = None
    dry_run: bool = False
    show_code: bool = False
    no_display: bool = False
    debug: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        hint = "see %%intervene? for the options"
        if unknown:
            word = unknown.group(1).split()[0]
            flags = [f for a in self._actions for f in a.option_strings]
            if word.startswith("-"):
                hint = did_you_mean(word, flags) or hint
                message = f"unknown option {word!r}"
            else:
                keys = [f[2:].replace("-", "_") + "=" for f in flags if f.startswith("--")]
                hint = did_you_mean(word.partition("=")[0] + "=", keys) or hint
                message = f"unexpected {word!r}"
        raise NbveneError(f"%%intervene: {message}", hint=hint)


def _parser() -> _Parser:
    p = _Parser(prog="%%intervene", add_help=False, allow_abbrev=False)
    p.add_argument("model", nargs="?", help="the model: a variable of the notebook")
    p.add_argument("tokenizer", nargs="?", help="its tokenizer (or -t)")
    p.add_argument("-t", "--tokenizer", dest="tokenizer_option", metavar="TOKENIZER")
    p.add_argument("-o", "--out", metavar="NAME", help="store the Result as NAME")
    p.add_argument("--device", help="move the model there first (cpu, cuda, cuda:1, mps)")
    p.add_argument("--max-batch", type=int, metavar="N", help="grid cells per forward pass")
    p.add_argument("--max-memory", metavar="SIZE", help='activation memory a pass, e.g. "2GB"')
    p.add_argument("--max-cells", type=int, metavar="N", help="refuse plans of more patched runs")
    p.add_argument("--sites", metavar="NAME", help="a dict of component → module path")
    p.add_argument("--dry-run", action="store_true", help="check and show the plan; run nothing")
    p.add_argument("--show-code", action="store_true", help="print the equivalent nv.run call")
    p.add_argument("--no-display", action="store_true", help="return nothing")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


PARSER = _parser()
FLAGS = tuple(f for a in PARSER._actions for f in a.option_strings)
VALUED = frozenset(f for a in PARSER._actions if a.nargs is None for f in a.option_strings)
"""Options that take a value (the word after them is theirs)."""
_KEYS = {f[2:].replace("-", "_"): f for f in FLAGS if f.startswith("--")}


def parse_line(line: str) -> tuple[Options, str | None]:
    """The options of a `%%intervene` line, and the NAME of a leading `NAME <<`.

    `key=value` words are read as `--key value` (`tokenizer=tok`, `max_batch=8`)."""
    capture = _CAPTURE.match(line)
    name = None
    if capture:
        name, line = capture.group(1), line[capture.end() :]
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise NbveneError(f"%%intervene: {e}", hint="quote values with matching quotes") from None
    args = []
    for word in words:
        key, eq, value = word.partition("=")
        if eq and not word.startswith("-"):
            flag = _KEYS.get(key.replace("-", "_"))
            if flag is None:
                PARSER.error(f"unrecognized arguments: {word}")
            args += [flag, value]
        else:
            args.append(word)
    found = PARSER.parse_intermixed_args(args)
    if found.tokenizer and found.tokenizer_option:
        raise NbveneError(
            f"%%intervene: two tokenizers ({found.tokenizer!r} and {found.tokenizer_option!r})",
        )
    for option in ("max_batch", "max_cells"):
        value = getattr(found, option)
        if value is not None and value < 1:
            flag = "--" + option.replace("_", "-")
            raise NbveneError(f"{flag} must be at least 1, got {value}")
    for option in (found.out, name):
        if option is not None and not option.isidentifier():
            raise NbveneError(f"%%intervene: {option!r} is not a variable name")
    options = Options(
        model=found.model,
        tokenizer=found.tokenizer or found.tokenizer_option,
        out=found.out,
        device=found.device,
        max_batch=found.max_batch,
        max_memory=found.max_memory,
        max_cells=found.max_cells,
        sites=found.sites,
        dry_run=found.dry_run,
        show_code=found.show_code,
        no_display=found.no_display,
        debug=found.debug,
    )
    return options, name


# --- the body ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """The spec a cell body holds, and where a leading `NAME <<` was cut from it.

    The spec keeps the body's lines (the `NAME <<` line keeps what follows `<<`), so spec line
    numbers are body line numbers; `place` puts the cut text back into an error's line."""

    spec: str
    name: str | None = None
    line: int = 0
    cut: str = ""

    @classmethod
    def of(cls, cell: str) -> Body:
        lines = cell.splitlines()
        for number, text in enumerate(lines, start=1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            m = _CAPTURE.match(text)
            if not m:
                break
            lines[number - 1] = text[m.end() :]
            return cls("\n".join(lines), m.group(1), number, text[: m.end()])
        return cls(cell)

    def place(self, e: NbveneError) -> NbveneError:
        """The error as the cell shows it: on the body line as written, caret moved along."""
        if not self.cut or e.line != self.line or e.text is None:
            return e
        column = None if e.column is None else e.column + len(self.cut)
        return NbveneError(
            e.message, line=e.line, text=self.cut + e.text, column=column, hint=e.hint
        )


# --- the same run in Python ---------------------------------------------------------------------


def variables(spec: Spec) -> list[str]:
    """The `{name}`s a spec reads, in order of first use."""
    found: dict[str, None] = {}

    def walk(node) -> None:
        if isinstance(node, Var | SelectorVar):
            found[node.name] = None
        elif dataclasses.is_dataclass(node):
            for f in dataclasses.fields(node):
                if f.name not in ("lines", "text"):
                    walk(getattr(node, f.name))
        elif isinstance(node, tuple | list):
            for item in node:
                walk(item)

    walk(spec)
    return list(found)


def python_code(
    spec_text: str,
    spec: Spec,
    *,
    model: str,
    tokenizer: str | None,
    out: str | None,
    device: str | None = None,
    max_batch: int = 64,
    max_memory: int | str | None = None,
    max_cells: int = MAX_CELLS,
    sites: str | None = None,
    function: str = "run",
) -> str:
    """The `nv.run` (or `nv.generate`) call that does what the cell does, for a script or a
    test."""
    text = spec_text.strip("\n")
    raw = "r" if "\\" in text else ""
    literal = repr(text) if "'''" in text else f"{raw}'''\n{text}\n'''"
    args = [literal, f"model={model}"]
    if tokenizer:
        args.append(f"tokenizer={tokenizer}")
    names = variables(spec)
    if names:
        args.append("namespace={" + ", ".join(f"{n!r}: {n}" for n in names) + "}")
    if sites:
        args.append(f"sites={sites}")
    if max_batch != 64 and function == "run":
        args.append(f"max_batch={max_batch}")
    if max_memory is not None and function == "run":
        args.append(f"max_memory={max_memory!r}")
    if max_cells != MAX_CELLS and function == "run":
        args.append(f"max_cells={max_cells}")
    lines = ["import nbvene as nv", ""]
    if device:
        lines.append(f"{model}.to({device!r})")
    lines.append(f"{out or 'res'} = nv.{function}(")
    lines += [f"    {a}," for a in args]
    lines.append(")")
    return "\n".join(lines)
