"""`Intervene`: the `%%intervene` cell magic and the `%nbvene` line magic, with their options as
traitlets (`%config Intervene.max_batch = 32`, or `[tool.nbvene]` in pyproject.toml)."""

from __future__ import annotations

import copy
import math
import sys
import weakref
from contextlib import contextmanager

import torch
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from torch import nn
from traitlets import Bool, Int, TraitError, Unicode, Union

import nbvene as nv
from nbvene.errors import NbveneError, UserCodeError, did_you_mean
from nbvene.magics.cell import (
    MAX_CELLS,
    Body,
    CellError,
    Options,
    line_options,
    parse_line,
    python_code,
)
from nbvene.magics.complete import COMMANDS, Context, fits
from nbvene.magics.defaults import Defaults
from nbvene.magics.reference import SiteTable, help_text
from nbvene.spec import KEYWORDS, has_sliders, is_steering
from nbvene.widgets.display import can_display, live_view


@magics_class
class Intervene(Magics):
    """Runs a spec cell on a model of the notebook and returns the `Result`.

    ::

        %%intervene model -o trace
        base:    "The Eiffel Tower is located in the city of"
        corrupt: noise 3σ on "The Eiffel Tower"
        restore: block_output layer=* pos=*
        metric:  p(" Paris")

    Everything it does is `nv.run(cell, model=..., tokenizer=..., namespace=user_ns)`;
    `--show-code` prints that call.
    """

    max_batch = Int(64, help="Grid cells per forward pass (nv.run's max_batch).").tag(config=True)
    max_memory = Union(
        [Int(), Unicode()],
        default_value=None,
        allow_none=True,
        help='Activation memory a forward pass may use, e.g. "2GB"; caps max_batch.',
    ).tag(config=True)
    max_cells = Int(
        MAX_CELLS, help="The most patched runs a plan may take (nv.run's max_cells)."
    ).tag(config=True)
    device = Unicode(
        None, allow_none=True, help="Move the model to this device before a run (cuda, mps)."
    ).tag(config=True)
    start_at_layer = Bool(
        True, help="Start each patched row at its layer, reusing the run below it."
    ).tag(config=True)
    display = Bool(True, help="Show the Result as the cell's value.").tag(config=True)
    live = Bool(
        True, help="In a notebook, draw a sweep's heatmap as it runs, with a Stop button."
    ).tag(config=True)
    debug = Bool(False, help="Show full Python tracebacks for spec errors.").tag(config=True)
    model = Unicode(
        None, allow_none=True, help="The variable %%intervene uses when the cell names no model."
    ).tag(config=True)
    tokenizer = Unicode(None, allow_none=True, help="The default model's tokenizer.").tag(
        config=True
    )

    def __init__(self, shell, defaults: Defaults | None = None, **kwargs):
        try:
            super().__init__(shell=shell, **kwargs)
        except TraitError as e:  # a bad value in the IPython config: keep the defaults
            print(f"nbvene: the IPython config for Intervene is not used: {e}", file=sys.stderr)
        self.defaults = Defaults.find() if defaults is None else defaults
        self.from_pyproject = self.defaults.apply(self)
        self._sites = weakref.WeakKeyDictionary()
        self._loaded = {}  # tokenizers loaded by model name (local files only)
        self.context = Context(
            namespace=shell.user_ns,
            hidden=self._hidden,
            model_of=self._model_quietly,
            sites_of=self.sites_of,
        )

    # --- %%intervene ------------------------------------------------------------------------

    @no_var_expand
    @cell_magic
    @line_options
    def intervene(self, line: str, cell: str):
        """Run the spec in the cell body on a model of the notebook and return the Result.

        %%intervene [NAME <<] [MODEL [TOKENIZER]] [options]

        The tokenizer comes from -t, from %nbvene use, or from the notebook's tokenizers.
        `NAME <<` stores the Result as NAME; `key=value` words are options too (tokenizer=TOK,
        max_batch=8); `{name}` in the spec reads the notebook's variables.

        %nbvene help shows the spec reference.
        """
        try:
            options, name = parse_line(line)
        except NbveneError as e:
            if self.debug:
                raise
            raise CellError.of(e, colour=self._colour) from None
        body = Body.of(cell)
        with self._errors(options.debug or self.debug, body):
            return self._run(line, cell, options, name or options.out or body.name, body)

    def _run(self, line: str, cell: str, options: Options, out: str | None, body: Body):
        model_name, model = self._model(options.model)
        tokenizer_name, tokenizer = self._tokenizer(model_name, model, options.tokenizer)
        sites = self._variable(options.sites, "mapping") if options.sites else None
        limits = {
            "max_batch": options.max_batch or self.max_batch,
            "max_memory": options.max_memory or self.max_memory,
            "max_cells": options.max_cells or self.max_cells,
        }
        device = options.device or self.device
        kwargs = {
            "model": model,
            "tokenizer": tokenizer,
            "namespace": self.shell.user_ns,
            "sites": sites,
        }
        spec = nv.parse(body.spec)
        generates = is_steering(spec) and spec.generate is not None
        if options.show_code:
            function = "generate" if generates else "run"
            names = {"model": model_name, "tokenizer": tokenizer_name, "sites": options.sites}
            code = python_code(
                body.spec,
                spec,
                out=out,
                device=device,
                function=function,
                remote=options.remote,
                **names,
                **limits,
            )
            print(code)
        if generates:
            with _tokenizer_hint(tokenizer is None, model_name):
                if device:
                    self._move(model_name, model, device)
                return self._generate(spec, kwargs, options, out, line, cell)
        with _tokenizer_hint(tokenizer is None, model_name):
            if options.dry_run:
                plan = nv.plan(body.spec, max_cells=limits["max_cells"], **kwargs)
                batch, memory = limits["max_batch"], limits["max_memory"]
                print(dry_run(plan, model_name, max_batch=batch, max_memory=memory))
                return None
            if device:
                self._move(model_name, model, device)
            live = self.live and not options.no_display and can_display()
            remote = {"remote": True} if options.remote else {}
            try:
                result = nv.run(
                    body.spec,
                    start_at_layer=self.start_at_layer,
                    live=live,
                    **remote,
                    **limits,
                    **kwargs,
                )
            except nv.SweepInterrupted as stop:
                result = stop.result
                print(_interrupted(result, out), file=sys.stderr)
        if isinstance(result, nv.Circuit):  # a discovery is shown even when stored as `out`
            self._value(result, options, out, line, cell)
            return None if options.no_display or not self.display else result
        if self._value(result, options, out, line, cell) is None:
            return None
        if live_view(result) is not None:
            return None  # the live heatmap, updated in place, is the Result's display already
        return result

    def _generate(self, spec, kwargs: dict, options: Options, out, line, cell):
        """A steering spec with generate: the baseline and steered text side by side; with
        sliders, the live steering panel (its Knob is the panel's callback)."""
        from nbvene.steer import Knob

        if options.dry_run:
            raise NbveneError(
                "--dry-run checks patching specs; a generate: spec makes its vectors first",
                hint="drop --dry-run, or run with a small max_new_tokens",
            )
        if options.remote:
            raise NbveneError(
                "--remote runs nv.run's specs on NDIF; a generate: spec runs on this machine",
                hint="drop --remote",
            )
        if has_sliders(spec):
            knob = Knob.of(spec, **kwargs)
            if can_display() and not out:
                shown = knob.panel()
            else:  # no widgets here (a terminal), or stored: the text at the sliders' start
                if not out:
                    print(
                        "nbvene: no widgets here; the text at the sliders' start values",
                        file=sys.stderr,
                    )
                shown = knob.generation(knob.start)
        else:
            try:
                shown = nv.generate(spec, **kwargs)
            except nv.GenerationInterrupted as stop:
                shown = stop.result
                where = f"stored as {out}" if out else "returned"
                print(f"interrupted: the text generated so far; {where}", file=sys.stderr)
        return self._value(shown, options, out, line, cell)

    def _value(self, shown, options: Options, out: str | None, line: str, cell: str):
        """What the cell returns: `shown` (its cell noted in its meta), or None where it is
        stored as `out` or not displayed."""
        if hasattr(shown, "meta"):
            shown.meta["cell"] = f"%%intervene {line}".rstrip() + "\n" + cell
        if out:
            self.shell.user_ns[out] = shown
            return None
        if options.no_display or not self.display:
            return None
        return shown

    @contextmanager
    def _errors(self, debug: bool, body: Body | None = None):
        """Spec errors as a few lines (no traceback) unless debugging; other errors, from the
        model or the user's own code, pass through with their traceback."""
        try:
            yield
        except UserCodeError:
            raise  # its traceback runs into the user's own function
        except NbveneError as e:
            if debug:
                raise
            placed = body.place(e) if body is not None else e
            raise CellError.of(placed, colour=self._colour) from None

    @property
    def _colour(self) -> bool:
        return str(getattr(self.shell, "colors", "nocolor")).lower() != "nocolor"

    # --- the model and its tokenizer ------------------------------------------------------------

    def _hidden(self, name: str) -> bool:
        return name.startswith("_") or name in getattr(self.shell, "user_ns_hidden", {})

    def _variable(self, written: str, kind: str):
        """The value of a variable (or `a.b` attribute path) of the notebook."""
        head, *attrs = written.split(".")
        namespace = self.shell.user_ns
        if head not in namespace:
            names = self.context.names(kind)
            hint = did_you_mean(head, names) or (
                f"{kind}s here: " + ", ".join(names) if names else f"no {kind} is defined yet"
            )
            raise NbveneError(f"no variable {head!r} in the notebook", hint=hint)
        value = namespace[head]
        for attr in attrs:
            try:
                value = getattr(value, attr)
            except AttributeError:
                raise NbveneError(f"{written!r}: no attribute {attr!r}") from None
        if not fits(value, kind):
            raise NbveneError(
                f"{written!r} is a {type(value).__name__}, not a {kind}",
                hint={"model": "a torch.nn.Module, e.g. from nv.models.load()"}.get(kind),
            )
        return value

    def _model(self, written: str | None) -> tuple[str, nn.Module]:
        if written:
            return written, self._variable(written, "model")
        if self.model:
            return self.model, self._variable(self.model, "model")
        models = self.context.names("model")
        if len(models) == 1:
            return models[0], self.shell.user_ns[models[0]]
        raise NbveneError(
            "which model? the cell names none",
            hint="write %%intervene MODEL, or %nbvene use MODEL once"
            + (f" (models here: {', '.join(models)})" if models else ""),
        )

    def _model_quietly(self, written: str | None) -> nn.Module | None:
        try:
            return self._model(written)[1]
        except NbveneError:
            return None

    def _tokenizer(self, model_name: str, model: nn.Module, written: str | None):
        """The tokenizer for a model: named, the default model's, the notebook's one that
        matches the model's name (or its only one), or one saved locally under that name."""
        if written:
            return written, self._variable(written, "tokenizer")
        if self.tokenizer and model_name == self.model:
            return self.tokenizer, self._variable(self.tokenizer, "tokenizer")
        found = self.context.names("tokenizer")
        ns = self.shell.user_ns
        wanted = _name(model)
        for name in found:
            if wanted and getattr(ns[name], "name_or_path", None) == wanted:
                return name, ns[name]
        if len(found) == 1:
            return found[0], ns[found[0]]
        if wanted and wanted not in self._loaded:
            self._loaded[wanted] = _local_tokenizer(wanted)
        if wanted and self._loaded[wanted] is not None:
            return f"AutoTokenizer.from_pretrained({wanted!r})", self._loaded[wanted]
        return None, None

    def sites_of(self, model: nn.Module):
        # the cached map keeps no reference to its model: a WeakKeyDictionary whose value holds
        # its key would keep the model (and its memory) for as long as the extension is loaded
        if model not in self._sites:
            try:
                found = nv.SiteMap(model)
            except Exception:  # completion must never fail loudly
                return None
            found.model = None
            self._sites[model] = found
        found = copy.copy(self._sites[model])
        found.model = model
        return found

    def _move(self, name: str, model: nn.Module, device: str) -> None:
        try:
            target = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise NbveneError(f"--device {device!r} is not a device ({e})") from None
        available = {
            "cuda": torch.cuda.is_available(),
            "mps": getattr(torch.backends, "mps", None) is not None
            and torch.backends.mps.is_available(),
        }
        if target.type == "meta":
            raise NbveneError(
                "--device meta holds no weights: moving the model there would lose them",
                hint="use --device cpu, cuda or mps",
            )
        if not available.get(target.type, True):
            raise NbveneError(
                f"device {device!r} is not available on this machine",
                hint="use --device cpu, or set Intervene.device = None",
            )
        param = next(model.parameters(), None)
        current = param.device if param is not None else torch.device("cpu")
        if current.type == target.type and (target.index is None or current == target):
            return
        model.to(target)
        print(f"moved {name} to {target}")

    # --- %nbvene ------------------------------------------------------------------------------

    @no_var_expand
    @line_magic
    def nbvene(self, line: str):
        """%nbvene use MODEL [TOKENIZER] | sites [MODEL] | config | debug on|off | help [STATEMENT]

        use     the model (and tokenizer) %%intervene takes when the cell names none
        sites   the model's components: module, hook and units a position
        config  the options and their values (%config Intervene.NAME = VALUE sets one)
        debug   full Python tracebacks for spec errors, or short messages (the default)
        help    the spec reference, with an example for each statement
        """
        command, *args = line.split() or ["help"]
        handlers = {
            "use": self._use,
            "sites": self._sites_table,
            "config": self._config,
            "debug": self._debug,
            "help": self._help,
        }
        assert tuple(sorted(handlers)) == tuple(sorted(COMMANDS))
        with self._errors(self.debug):
            if command not in handlers:
                raise NbveneError(
                    f"%nbvene: unknown command {command!r}",
                    hint=did_you_mean(command, handlers) or "commands: " + ", ".join(handlers),
                )
            return handlers[command](args)

    def _use(self, args: list[str]):
        if not args:
            print(f"model: {self.model or '(none)'}, tokenizer: {self.tokenizer or '(none)'}")
            return
        if len(args) > 2:
            raise NbveneError("%nbvene use MODEL [TOKENIZER]: too many words")
        model = self._variable(args[0], "model")
        if len(args) == 2:
            self._variable(args[1], "tokenizer")
            tokenizer = args[1]
        else:
            self.model, self.tokenizer = args[0], None
            tokenizer = self._tokenizer(args[0], model, None)[0]
            tokenizer = tokenizer if tokenizer in self.shell.user_ns else None
        self.model, self.tokenizer = args[0], tokenizer
        sites = self.sites_of(model)
        layers = f", {sites.n_layers} layers" if sites and sites.n_layers else ""
        family = sites.family_name if sites else "unknown family"
        print(
            f"%%intervene uses {args[0]} ({type(model).__name__}, {family}{layers})"
            + (f" with tokenizer {tokenizer}" if tokenizer else ", no tokenizer: -t TOKENIZER")
        )

    def _sites_table(self, args: list[str]) -> SiteTable:
        if len(args) > 1:
            raise NbveneError("%nbvene sites [MODEL]: too many words")
        name, model = self._model(args[0] if args else None)
        return SiteTable.of(model, name, self.sites_of(model))

    def _config(self, args: list[str]) -> None:
        names = sorted(self.class_trait_names(config=True))
        width = max(map(len, names))
        lines = ["Intervene options (%config Intervene.NAME = VALUE):"]
        for name in names:
            trait = self.traits()[name]
            value = getattr(self, name)
            source = "  [tool.nbvene]" if name in self.from_pyproject else ""
            lines.append(f"  {name:<{width}}  {value!r:<10} {trait.help}{source}")
        where = self.defaults.path
        lines.append(f"defaults from {where}" if where else "no [tool.nbvene] in a pyproject.toml")
        print("\n".join(lines))

    def _debug(self, args: list[str]) -> None:
        if args not in (["on"], ["off"]):
            raise NbveneError("%nbvene debug on|off", hint=f"debug is {self._onoff}")
        self.debug = args == ["on"]
        print(
            f"debug {self._onoff}: spec errors show "
            + ("full tracebacks" if self.debug else "short messages")
        )

    @property
    def _onoff(self) -> str:
        return "on" if self.debug else "off"

    def _help(self, args: list[str]) -> None:
        topic = args[0].rstrip(":") if args else None
        if topic is not None and topic not in KEYWORDS:
            raise NbveneError(
                f"no statement {topic!r}",
                hint=did_you_mean(topic, KEYWORDS) or "statements: " + ", ".join(KEYWORDS),
            )
        print(help_text(topic))


# --- what a cell prints ------------------------------------------------------------------------


def dry_run(plan, model_name: str, *, max_batch: int, max_memory=None) -> str:
    """The plan, and what running it takes: forward passes, activation memory, arithmetic."""
    sites = plan.sites
    layers = f", {sites.n_layers} layers" if sites.n_layers else ""
    return "\n".join(
        [
            f"dry run on {model_name} ({sites.family_name}{layers}): nothing was run",
            plan.describe(max_batch=max_batch, max_memory=max_memory),
        ]
    )


def _interrupted(result, name: str | None) -> str:
    values = result.values
    cells = math.prod(len(a.labels) for a in result.axes) or 1
    flat = values.reshape(cells, -1) if values.numel() else values.reshape(cells, 0)
    done = int((~torch.isnan(flat.float())).any(dim=1).sum())
    where = f"stored as {name}" if name else "returned"
    return f"interrupted: {done} of {cells} cells measured (the others are NaN); {where}"


@contextmanager
def _tokenizer_hint(missing: bool, model_name: str):
    """Where no tokenizer was found, say how to name one in a notebook (not as nv.run's
    keyword)."""
    try:
        yield
    except NbveneError as e:
        if not missing or "tokenizer" not in e.message:
            raise
        raise NbveneError(
            e.message.replace("no tokenizer was given", f"no tokenizer was found for {model_name}"),
            line=e.line,
            text=e.text,
            column=e.column,
            hint=f"name one: %%intervene {model_name} -t TOKENIZER, or %nbvene use {model_name} "
            "TOKENIZER",
        ) from None


def _name(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    return getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None) or None


def _local_tokenizer(name: str):
    """A tokenizer saved under the model's name (a folder, or the hub cache): never a download."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:  # any failure means: no tokenizer of that name here
        return None
