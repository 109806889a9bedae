"""One `%%intervene` cell: its magic line (model, options), its body (`NAME <<`, then the spec),
the equivalent Python call, and errors shown as a few lines instead of a traceback."""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
from dataclasses import dataclass

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

import nbvene as nv
from nbvene.errors import NbveneError, did_you_mean
from nbvene.spec import SelectorVar, Spec, Var

MAX_CELLS: int = inspect.signature(nv.run).parameters["max_cells"].default
"""nv.run's `max_cells`: the most patched runs a plan may take, unless a cell says otherwise."""

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
    """What the `%%intervene` line says; None where it says nothing (the configured default).
    One field per option of `_OPTIONS` (`-t` and the second positional are both `tokenizer`)."""

    model: str | None = None
    tokenizer: str | None = None
    out: str | None = None
    device: str | None = None
    max_batch: int | None = None
    max_memory: str | None = None
    max_cells: int | None = None
    sites: str | None = None
    dry_run: bool = False
    remote: bool = False
    show_code: bool = False
    no_display: bool = False
    debug: bool = False


_OPTIONS = (
    argument(
        "model",
        nargs="?",
        help="the model: a variable of the notebook (default: "
        "%%nbvene use MODEL, or the one model in the notebook)",
    ),
    argument("tokenizer", nargs="?", help="its tokenizer (or -t)"),
    argument(
        "-t",
        "--tokenizer",
        dest="tokenizer_option",
        metavar="TOKENIZER",
        help="the tokenizer (also tokenizer=TOKENIZER)",
    ),
    argument(
        "-o",
        "--out",
        metavar="NAME",
        help="store the Result as NAME (NAME << at the "
        "start of the line or of the body does the same); nothing is displayed",
    ),
    argument("--device", help="move the model there first (cpu, cuda, cuda:1, mps)"),
    argument(
        "--max-batch",
        type=int,
        metavar="N",
        help="grid cells per forward pass (%%config Intervene.max_batch)",
    ),
    argument("--max-memory", metavar="SIZE", help='activation memory a pass may use, e.g. "2GB"'),
    argument(
        "--max-cells",
        type=int,
        metavar="N",
        help="refuse plans of more patched runs (default 1,000,000)",
    ),
    argument(
        "--sites", metavar="NAME", help="a dict naming components of any nn.Module by module path"
    ),
    argument(
        "--dry-run",
        action="store_true",
        help="check the spec and show the plan: grid, forward passes and memory; run nothing",
    ),
    argument(
        "--remote",
        action="store_true",
        help="run on NDIF through nnsight (the model an nnsight.LanguageModel; nv.run's remote)",
    ),
    argument("--show-code", action="store_true", help="print the equivalent nv.run call"),
    argument("--no-display", action="store_true", help="return nothing"),
    argument(
        "--debug", action="store_true", help="full Python tracebacks (also %%nbvene debug on)"
    ),
)
"""The `%%intervene` line's options, each written once: `line_options` turns them into the
magic's parser and its help."""


def line_options(magic):
    """`magic` with the `%%intervene` line's options: IPython's `magic_arguments` builds its
    parser (`magic.parser`) from `_OPTIONS` and writes them into its docstring (`%%intervene?`).
    """
    for option in reversed(_OPTIONS):  # magic_arguments reads them in the order written
        magic = option(magic)
    magic = magic_arguments("%intervene")(magic)  # its usage line adds one % more
    magic.parser.allow_abbrev = False
    return magic


@line_options
def _line():
    """The parser `parse_line` and completion use."""


PARSER = _line.parser
FLAGS = tuple(f for a in PARSER._actions for f in a.option_strings)
VALUED = frozenset(f for a in PARSER._actions if a.nargs is None for f in a.option_strings)
"""Options that take a value (the word after them is theirs)."""
_KEYS = {f[2:].replace("-", "_"): f for f in FLAGS if f.startswith("--")}


def _line_error(message: str) -> NbveneError:
    """An argparse complaint about the magic line as a short error, with a did-you-mean."""
    unknown = re.search(r"unrecognized arguments: (.*)", message)
    hint = "see %%intervene? for the options"
    if unknown:
        word = unknown.group(1).split()[0]
        if word.startswith("-"):
            hint = did_you_mean(word, FLAGS) or hint
            message = f"unknown option {word!r}"
        else:
            keys = [k + "=" for k in _KEYS]
            hint = did_you_mean(word.partition("=")[0] + "=", keys) or hint
            message = f"unexpected {word!r}"
    return NbveneError(f"%%intervene: {message}", hint=hint)


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
                raise _line_error(f"unrecognized arguments: {word}")
            args += [flag, value]
        else:
            args.append(word)
    try:
        found = PARSER.parse_intermixed_args(args)
    except UsageError as e:
        raise _line_error(str(e)) from None
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
    values = vars(found)
    written = values.pop("tokenizer_option")
    values["tokenizer"] = values["tokenizer"] or written
    options = Options(**values)
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
    remote: bool = False,
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
    if remote and function == "run":
        args.append("remote=True")
    lines = ["import nbvene as nv", ""]
    if device:
        lines.append(f"{model}.to({device!r})")
    lines.append(f"{out or 'res'} = nv.{function}(")
    lines += [f"    {a}," for a in args]
    lines.append(")")
    return "\n".join(lines)
