"""`SiteMap`: a model's components bound to its modules; `Site`: one of them at one layer."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from torch import nn

from nbvene.errors import NbveneError, did_you_mean
from nbvene.sites.families import KEY_VALUE_HEADS, Discovered, Part, Shape, family_of
from nbvene.sites.names import (
    ALIASES,
    COMPONENTS,
    TRANSFORMERLENS_ONLY,
    Component,
    component,
    no_equivalent,
    transformerlens_name,
)
from nbvene.sites.view import WHOLE, View


class IO(str, enum.Enum):
    """Which of a module's values a site is: its input, its output, or (attention) weights."""

    __str__ = str.__str__  # the value, as enum.StrEnum (Python 3.11+) gives it

    INPUT = "input"
    OUTPUT = "output"
    WEIGHTS = "weights"


@dataclass(frozen=True)
class Site:
    """A hook point: a module, whether its input or output, and the view of the units there."""

    component: str
    layer: int | None
    module: str
    io: IO
    view: View = WHOLE
    residual: str | None = None
    """A module whose input the block adds to this site's output (then the site is the sum)."""

    def __post_init__(self):
        object.__setattr__(self, "io", IO(self.io))

    @property
    def heads(self) -> int | None:
        """How many heads the units split into, or None for a whole-vector site."""
        return self.view.heads if self.view.by_head else None


class SiteMap:
    """The sites of one model.

    >>> sites = SiteMap(model)
    >>> sites.site(sites.resolve("head_query_output"), layer=3)
    Site(component='head_query_output', layer=3, module='model.layers.3.self_attn.q_proj', ...)

    `mapping` names components of any `nn.Module` by module path templates, e.g.
    ``{"block_output": "blocks[{layer}].output", "hidden": "encoder.hidden.output"}``.
    """

    def __init__(self, model: nn.Module, mapping: dict[str, str] | None = None):
        self.model = model
        self.mapping = dict(mapping or {})
        self.family = family_of(model)
        config = getattr(model, "config", None)
        self.shape = Shape.of(config) if config is not None and self.family else None
        self.parts: dict[str, Part] = {}
        self.transformerlens: dict[str, Part | None] = {}
        """Parts for TransformerLens' names whose tensor no component holds (by short name)."""
        self.n_layers: int | None = None
        if self.family is not None:
            self.parts = self.family.parts(config, self.shape)
            self.transformerlens = self.family.transformerlens(config)
            self.n_layers = len(model.get_submodule(self.family.blocks))
        for template in self.mapping.values():
            if "{layer}" in template and self.n_layers is None:
                self.n_layers = self._count_layers(template)

    @property
    def family_name(self) -> str:
        if self.family is None:
            return "user mapping" if self.mapping else "unknown"
        return self.family.name

    def components(self) -> list[str]:
        """Canonical components this model has (and the user's mapped names)."""
        return [*self.parts, *self.mapping]

    def resolve(self, written: str) -> Component:
        """What a written component means for this model; raises with a suggestion if nothing."""
        if written in self.mapping:
            template = self.mapping[written]
            m = re.fullmatch(r"(.+)\.(input|output)", template)
            if not m:
                raise NbveneError(
                    f"mapping for {written!r} must end in .input or .output, got {template!r}"
                )
            return Component(written, module=m.group(1), io=m.group(2))
        found = component(written)
        tl = transformerlens_name(written) if written not in COMPONENTS else None
        if tl is not None and tl[0] in self.transformerlens:
            if self.transformerlens[tl[0]] is None:
                raise NbveneError(
                    f"TransformerLens' {written!r} has no equivalent on this model "
                    f"({self.family_name})",
                    hint="TransformerLens' HookedEncoder takes it before the block's post-norm, "
                    "as the sum no module outputs; resid_mid and block_output are after the norm",
                )
            return Component(tl[0], layer=tl[1])
        if found is None and no_equivalent(written):
            raise NbveneError(
                f"{written!r} is a TransformerLens hook with no equivalent in nbvene",
                hint=no_equivalent(written),
            )
        if found is None:
            names = [*self.components(), *(a for a, c in ALIASES.items() if c in self.parts)]
            raise NbveneError(
                f"unknown component {written!r}",
                hint=did_you_mean(written, names)
                or "components of this model: "
                + ", ".join(self.components())
                + "; or a module path such as model.layers[3].mlp.output",
            )
        if found.raw:
            self._check_module(found.module, written)
        elif found.name not in self.parts:
            raise NbveneError(
                f"{found.name!r} is not available for this model ({self.family_name})",
                hint=self._unavailable_hint(found.name),
            )
        return found

    def layered(self, c: Component) -> bool:
        """Whether the component needs `layer=`."""
        if c.raw:
            return "{layer}" in c.module
        return c.layer is None

    def site(self, c: Component, layer: int | None) -> Site:
        """The site of a resolved component at a layer (None for raw paths without {layer})."""
        if c.raw:
            module = _module_path(c.module.replace("{layer}", str(layer)))
            return Site(c.name, layer, module, c.io)
        layer = c.layer if c.layer is not None else layer
        part = self._part(c)
        block = f"{self.family.blocks}.{layer}"
        module = f"{block}.{part.path}" if part.path else block
        if part.io == "residual":  # the module's output plus the block's input
            return Site(c.name, layer, module, "output", part.view, residual=block)
        return Site(c.name, layer, module, part.io, part.view)

    def heads(self, c: Component) -> int | None:
        """How many heads the component's units split into, or None."""
        if c.raw:
            return None
        view = self._part(c).view
        return view.heads if view.by_head else None

    def head_kind(self, c: Component) -> str:
        """What the component's heads are, for messages: "key/value heads" or "heads"."""
        return "key/value heads" if c.name in KEY_VALUE_HEADS else "heads"

    def _part(self, c: Component) -> Part:
        return self.parts.get(c.name) or self.transformerlens[c.name]

    def _unavailable_hint(self, name: str) -> str:
        if name in TRANSFORMERLENS_ONLY:
            return (
                f"TransformerLens' {name} is the residual stream before the norm that feeds only "
                f"the {'attention' if name == 'attn_in' else 'MLP'}; this family has no such "
                "norm (GPT-J's attention and MLP share ln_1; post-norm models norm afterwards)"
            )
        if name == "attention_weight":
            return (
                "this family computes attention without transformers' attention interface, "
                "so its probabilities cannot be reached; patch head_value_output or z instead"
            )
        if name == "resid_mid":
            return "this model's blocks add attention and MLP in parallel: there is no resid_mid"
        if isinstance(self.family, Discovered):
            return (
                "this model's family is not known to nbvene; use a module path such as "
                f"{self.family.blocks}[3].output, or pass sites={{'{name}': '...output'}}"
            )
        return "available: " + ", ".join(self.components())

    def _check_module(self, path: str, written: str) -> None:
        concrete = _module_path(path.replace("{layer}", "0"))
        try:
            self.model.get_submodule(concrete)
        except AttributeError:
            names = [n for n, _ in self.model.named_modules() if n]
            raise NbveneError(
                f"the model has no module {concrete!r} (from {written!r})",
                hint=did_you_mean(concrete, names)
                or "list them with [n for n, _ in model.named_modules()]",
            ) from None

    def _count_layers(self, template: str) -> int:
        count = 0
        while True:
            try:
                self.model.get_submodule(_module_path(template.replace("{layer}", str(count))))
            except AttributeError:
                return count
            count += 1


def _module_path(written: str) -> str:
    """`model.layers[3].mlp` → `model.layers.3.mlp` (the form `get_submodule` takes)."""
    path = re.sub(r"\[(\d+)\]", r".\1", written)
    return re.sub(r"\.(input|output)$", "", path)
