"""What `%nbvene help` and `%nbvene sites` show: the spec reference with examples, and a
model's sites (component, module, hook, units per position) as a table."""

from __future__ import annotations

import html
import textwrap
from dataclasses import dataclass

from torch import nn

from nbvene.magics.cell import PARSER
from nbvene.sites import ALIASES, SiteMap
from nbvene.spec import STATEMENTS

SELECTORS = """\
selectors (layer= pos= head=):  3   -1   2..5 (both ends)   [1, 4, 7]   *   last   "Tower"
  {name} (a notebook variable)   pos=a->b (base a takes source b)
  *, ranges and lists are swept: one result axis each, in the order layer, pos, head
options:  window=N (a band of layers)   over=PROMPTS (mean)   by {v} * k   via {f} (your own)"""

EXAMPLE = """\
%%intervene model -o trace
# ROME-style causal tracing: corrupt the subject, restore one state at a time
base:    "The Eiffel Tower is located in the city of"
corrupt: noise 3σ on "The Eiffel Tower"
restore: block_output layer=* pos=*
metric:  p(" Paris")"""

MAGIC = "\n".join(
    [
        # the usage line magic_arguments writes from the options, after `NAME <<`
        textwrap.fill(
            "%%intervene [NAME <<] " + " ".join(PARSER.format_usage().split()[2:]),
            width=92,
            subsequent_indent=" " * 12,
            break_on_hyphens=False,
        ),
        "%nbvene use MODEL [TOKENIZER] | sites [MODEL] | config | debug on|off | help [STATEMENT]",
    ]
)


def help_text(topic: str | None = None) -> str:
    """The spec reference: every statement with an example (from `STATEMENTS`); or one's."""
    if topic:
        statement = STATEMENTS[topic]
        examples = statement.example.splitlines()
        return f"{topic}: {statement.help()}\n\n" + "\n".join(f"    {e}" for e in examples)
    width = max(map(len, STATEMENTS)) + 1
    rows = []
    for keyword, statement in STATEMENTS.items():
        rows.append(f"  {keyword + ':':<{width}} {statement.help()}")
        rows += [f"  {'':<{width}}   {e}" for e in statement.example.splitlines()]
    return "\n".join(
        [
            "The spec: one statement a line, 'keyword: value'; # starts a comment.",
            "",
            *rows,
            "",
            SELECTORS,
            "",
            "components: %nbvene sites lists the model's (with their TransformerLens aliases)",
            "",
            "example:",
            *(f"    {e}" for e in EXAMPLE.splitlines()),
            "",
            MAGIC,
            "Full reference: docs/spec.md in the nbvene repository.",
        ]
    )


# --- sites ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteRow:
    component: str
    aliases: tuple[str, ...]
    module: str
    io: str
    units: str


@dataclass(frozen=True)
class SiteTable:
    """A model's sites, one row a component: shown as text, or as HTML in a notebook."""

    title: str
    rows: tuple[SiteRow, ...]

    @classmethod
    def of(cls, model: nn.Module, name: str = "model", sites: SiteMap | None = None) -> SiteTable:
        sites = sites or SiteMap(model)
        shape = sites.shape
        title = f"{name}: {type(model).__name__}, family {sites.family_name}"
        if sites.n_layers is not None:
            title += f", {sites.n_layers} layers"
        if shape is not None:
            kv = f" ({shape.kv_heads} key/value)" if shape.kv_heads != shape.heads else ""
            title += f", hidden {shape.hidden}, {shape.heads} heads{kv} of {shape.head_dim}"
        rows = []
        for written in sites.components():
            component = sites.resolve(written)
            layer = 0 if sites.layered(component) else None
            site = sites.site(component, layer)
            module = site.module
            blocks = getattr(sites.family, "blocks", None)
            if blocks and layer == 0 and (module + ".").startswith(f"{blocks}.0."):
                module = f"{blocks}.{{layer}}" + module[len(blocks) + 2 :]
            aliases = tuple(a for a, c in ALIASES.items() if c == written)
            io = "output + block input" if site.residual else site.io
            rows.append(SiteRow(written, aliases, module, io, _units(model, site, shape)))
        return cls(title, tuple(rows))

    def _columns(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        head = ("component", "aliases", "module", "hook", "units a position")
        body = [(r.component, ", ".join(r.aliases), r.module, r.io, r.units) for r in self.rows]
        return head, body

    def __repr__(self) -> str:
        head, body = self._columns()
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        lines = [self.title, "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        head, body = self._columns()
        cells = "".join(
            "<tr>" + "".join(f"<td><code>{html.escape(c)}</code></td>" for c in row) + "</tr>"
            for row in body
        )
        th = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head)
        return (
            f"<table><caption style='text-align:left'>{html.escape(self.title)}</caption>"
            f"<tr>{th}</tr>{cells}</table>"
        )


def _units(model: nn.Module, site, shape) -> str:
    """The units at one position, `d` or `heads × head_dim`, read from the hooked module."""
    view = site.view
    if site.io == "weights":
        return f"{view.heads} × positions"
    hidden = shape.hidden if shape is not None else None
    try:
        module = model.get_submodule(site.module)
    except AttributeError:
        return "?"
    width = hidden if site.residual else _width(module, site.io, hidden)
    if width is None:
        return "?"
    if view.fused > 1:
        width //= view.fused
    elif view.sliced:
        width = (width if view.stop is None else view.stop) - view.start
    if view.by_head and view.heads:
        return f"{view.heads} × {width // view.heads}"
    return str(width)


def _width(module: nn.Module, io: str, hidden: int | None) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features if io == "output" else module.in_features
    weight = getattr(module, "weight", None)
    if hasattr(module, "nf") and weight is not None:  # GPT-2's Conv1D: weight is (in, out)
        return int(weight.shape[1] if io == "output" else weight.shape[0])
    return hidden
