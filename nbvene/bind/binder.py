"""The binder: a spec's names, prompts, positions and metric read against one model, each
problem raised on the spec line it is about. Patching (`nbvene.bind.patching`), steering
(`nbvene.bind.steering`) and training bind through it."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nbvene.bind import limits
from nbvene.bind.plan import MetricPlan
from nbvene.bind.prompts import Prompt, from_ids, from_values, tokenize
from nbvene.errors import NbveneError, error_at
from nbvene.sites import SiteMap
from nbvene.spec import (
    All,
    Batch,
    Edit,
    Index,
    Last,
    SelectorVar,
    Span,
    Spec,
    Text,
    TokenText,
    Var,
    selector_text,
)
from nbvene.spec.metrics import lookup


def _check_arguments(tokenizer, namespace, sites) -> None:
    """The keyword arguments that come with a spec are of the kinds they must be."""
    if tokenizer is not None and not callable(tokenizer):
        raise NbveneError(
            f"tokenizer must be a tokenizer, got {type(tokenizer).__name__}",
            hint="pass the model's own, e.g. AutoTokenizer.from_pretrained(...), or None",
        )
    if namespace is not None and not isinstance(namespace, Mapping):
        raise NbveneError(
            f"namespace must map names to values, got {type(namespace).__name__}",
            hint="pass namespace={'prompts': prompts}, or namespace=globals()",
        )
    if sites is not None and not isinstance(sites, SiteMap | Mapping):
        raise NbveneError(
            f"sites must map component names to module paths, got {type(sites).__name__}",
            hint='pass e.g. sites={"block_output": "blocks[{layer}].output"}',
        )


class Binder:
    """A spec read against a model: `namespace` gives the `{name}` values, `sites` the
    component names of a model nbvene has no adapter for. Its methods each bind one kind of
    thing (prompts, positions, layers, the metric) and raise on the spec line it is on."""

    def __init__(self, spec: Spec, model: nn.Module, tokenizer=None, namespace=None, sites=None):
        _check_arguments(tokenizer, namespace, sites)
        self.spec, self.model, self.tokenizer = spec, model, tokenizer
        self.namespace = dict(namespace or {})
        self.sites = sites if isinstance(sites, SiteMap) else SiteMap(model, sites)

    def error(
        self, error: str | NbveneError, line: int, hint: str | None = None, token: str | None = None
    ) -> NbveneError:
        """An error placed on a line of this spec (see `nbvene.errors.error_at`)."""
        return error_at(self.spec, error, line, hint, token)

    def lookup(self, var: Var, line: int):
        """The value a `{name}` stands for, from the namespace."""
        if var.name not in self.namespace:
            raise self.error(
                f"{{{var.name}}} is not defined",
                line,
                hint=f"pass namespace={{'{var.name}': ...}} to nv.run, or define it in a notebook",
                token="{" + var.name + "}",
            )
        return self.namespace[var.name]

    def prompts(self, prompts, line: int) -> list[Prompt]:
        """The prompts of a base:, source: or over= value, each checked to fit the model."""
        found = self.read_prompts(prompts, line)
        for prompt in found:
            self.fits(prompt, line)
        return found

    def fits(self, prompt: Prompt, line: int) -> None:
        """A prompt fits the model's context window."""
        window = limits.context(self.model)
        if window is not None and len(prompt) > window:
            raise self.error(
                f"the prompt has {len(prompt)} tokens, and the model takes at most {window}",
                line,
                hint="shorten the prompt",
            )

    def read_prompts(self, prompts, line: int) -> list[Prompt]:
        """The prompts a written value stands for: text, `{name}` (text, a list of texts,
        token ids or float inputs), or a batch of those."""
        if isinstance(prompts, Batch):
            return [p for item in prompts.items for p in self.read_prompts(item, line)]
        if isinstance(prompts, Text):
            return [self.prompt(prompts.value, line)]
        value = self.lookup(prompts, line)
        if isinstance(value, str):
            return [self.prompt(value, line)]
        if isinstance(value, torch.Tensor) and value.is_floating_point() and self.takes_ids:
            raise self.error(
                f"{{{prompts.name}}} holds {value.dtype} numbers, and the model takes token ids",
                line,
                hint=f"give token ids as an integer tensor: {prompts.name}.long(), or text",
                token="{" + prompts.name + "}",
            )
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() <= 3:
            # inputs of a model that takes vectors: (features,), (batch, features) or
            # (batch, seq, features); a (batch, features) row is one position
            return [from_values(r) for r in (value.unsqueeze(0) if value.dim() == 1 else value)]
        if isinstance(value, torch.Tensor):
            if value.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
                raise self.error(
                    f"{{{prompts.name}}} must hold token ids (an integer tensor) or float "
                    "inputs (features, batch × features or batch × seq × features)",
                    line,
                )
            rows = value.unsqueeze(0) if value.dim() == 1 else value
            self.check_ids(value, prompts.name, line)
            return [from_ids(r, self.tokenizer) for r in rows]
        if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            return [self.prompt(v, line) for v in value]
        raise self.error(
            f"{{{prompts.name}}} must be a prompt, a list of prompts or a tensor of token ids; "
            f"got {type(value).__name__}",
            line,
        )

    def is_list(self, prompts) -> bool:
        """Whether a `{name}` holds a batch of prompts (so the result has an example axis)."""
        if not isinstance(prompts, Var):
            return False
        value = self.namespace.get(prompts.name)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.dim() >= 2  # float inputs: the last axis holds the features
        return isinstance(value, list | tuple) or (
            isinstance(value, torch.Tensor) and value.dim() == 2
        )

    @property
    def takes_ids(self) -> bool:
        """Whether the model takes token ids (it has an input embedding)."""
        return limits.vocabulary(self.model) is not None

    def check_ids(self, ids: torch.Tensor, name: str, line: int) -> None:
        """Token ids given as a tensor: one or two axes, each id in the model's vocabulary."""
        vocabulary = limits.vocabulary(self.model)
        bad = None
        if ids.dim() not in (1, 2) or ids.numel() == 0:
            bad = f"{{{name}}} has shape {tuple(ids.shape)}"
        elif ids.min() < 0:
            bad = f"{{{name}}} holds the token id {int(ids.min())}"
        elif vocabulary is not None and ids.max() >= vocabulary:
            bad = f"{{{name}}} holds the token id {int(ids.max())}"
        if bad is not None:
            upper = f"0..{vocabulary - 1}" if vocabulary is not None else "0 or more"
            raise self.error(
                f"{bad}; token ids go {upper}",
                line,
                hint="give (tokens,) or (examples, tokens) ids in the model's vocabulary",
                token="{" + name + "}",
            )

    def prompt(self, text: str, line: int) -> Prompt:
        """One prompt's text, tokenised."""
        try:
            return tokenize(self.tokenizer, text)
        except NbveneError as e:
            raise self.error(e, line) from None

    def metric(self, has_source: bool) -> MetricPlan | None:
        """The metric: its token ids, checked; `has_source` says whether a clean run exists."""
        m = self.spec.metric
        if m is None:
            return None
        found = lookup(m.name)
        if found is None:  # a Spec built by hand: the parser knows the registered names
            raise self.error(f"unknown metric {m.name!r}", m.line)
        ids = tuple(self.token_id(arg, m.line) for arg in m.args)
        if m.normalized and not has_source:
            raise self.error(
                "normalized needs a clean run to compare with",
                m.line,
                hint="add a source: or a corrupt: line, or drop 'normalized'",
                token="normalized",
            )
        if found.needs_clean and not has_source:
            raise self.error(
                f"{m.name} compares with the clean run: the spec needs a source: or corrupt: line",
                m.line,
            )
        return MetricPlan(m.name, ids, m.normalized)

    def token_id(self, text: str | int | Var, line: int) -> int:
        if isinstance(text, Var):  # metric: logit_diff({correct}, {wrong})
            value = self.lookup(text, line)
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise self.error(
                    f"{{{text.name}}} must be a token's text or id, got {type(value).__name__}",
                    line,
                    hint='e.g. correct = " Mary"',
                    token="{" + text.name + "}",
                )
            text = value
        if isinstance(text, int):
            return self.output_id(text, line)
        if self.tokenizer is None:
            raise self.error(
                f"the metric token {text!r} needs a tokenizer",
                line,
                hint="pass tokenizer=..., or name the output index: p(42)",
                token=f'"{text}"',
            )
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i]) for i in ids]
            raise self.error(
                f"{text!r} is {len(ids)} tokens for this tokenizer: {pieces}",
                line,
                hint="the metric reads one next token; pick a word that is a single token, "
                'often with a leading space, e.g. " Paris"',
                token=f'"{text}"',
            )
        return self.output_id(ids[0], line)

    def output_id(self, index: int, line: int) -> int:
        """A metric's token id (or class index): one of the scores the model outputs."""
        size = limits.outputs(self.model)
        if index < 0 or (size is not None and index >= size):
            upper = f"0..{size - 1}" if size is not None else "0 or more"
            raise self.error(
                f"the metric reads output {index}, and the model's outputs go {upper}",
                line,
                hint='name a token id in the vocabulary, or the token\'s text: p(" Paris")',
                token=str(index),
            )
        return index

    def ints(
        self, selector, axis: str, line: int, heads: int | None = None, check=None
    ) -> list[int]:
        """The integers a swept layer/head/pos selector stands for; `check` raises on the first
        value of a range out of bounds, as the range is laid out."""
        if isinstance(selector, All):
            return list(range(self.sites.n_layers if axis == "layer" else heads))
        if isinstance(selector, Span):
            if selector.stop < selector.start:
                raise self.error(
                    f"the range {selector.start}..{selector.stop} is empty",
                    line,
                    hint="ranges include both ends and go upwards: 3..5 is 3, 4, 5",
                    token=f"{selector.start}..{selector.stop}",
                )
            values = []
            for value in range(selector.start, selector.stop + 1):
                if check is not None:
                    check(value)  # stops a range such as 0..10**18 at the first bad value
                values.append(value)
            return values
        return list(selector.items)

    def layer(self, value: int, stmt: Edit) -> int:
        """A layer number, checked against the model (a negative one counts from the end)."""
        n = self.sites.n_layers
        if not -n <= value < n:
            raise self.error(
                f"layer {value} is out of range: the model has {n} layers (0..{n - 1})",
                stmt.line,
                hint=f"use layer=0..{n - 1} or layer=*",
                token="layer=",
            )
        return value % n

    def position(self, selector, prompt: Prompt, stmt: Edit) -> int:
        """The position of `pos=-1` or `pos=3` in a prompt, checked to be in it."""
        match selector:
            case Last():
                return len(prompt) - 1
            case Index(value):
                if not -len(prompt) <= value < len(prompt):
                    raise self.error(
                        f"pos={value} is past the prompt, which has {len(prompt)} tokens: "
                        f"{list(prompt.tokens)}",
                        stmt.line,
                        hint=f"positions go from 0 to {len(prompt) - 1}, or -1 for the last",
                        token="pos=",
                    )
                return value % len(prompt)
        raise TypeError(selector)  # pragma: no cover

    def find(self, prompt: Prompt, text: str, line: int) -> list[int]:
        """The positions of the tokens that make up `text` in the prompt."""
        found = prompt.find(text)
        if not found:
            raise self.error(
                f"{text!r} is not in the prompt {prompt.text!r}; its tokens are "
                f"{list(prompt.tokens)}",
                line,
                hint="write the text exactly as it appears in the prompt",
                token=f'"{text}"',
            )
        return found

    def fixed_positions(self, selector, prompt: Prompt, example: int, stmt: Edit):
        """The positions of a non-swept pos= selector (several for a token text)."""
        match selector:
            case None:
                return list(range(len(prompt)))
            case TokenText(text):
                return self.find(prompt, text, stmt.line)
            case SelectorVar(name):
                value = self.lookup(Var(name), stmt.line)
                if isinstance(value, int) and not isinstance(value, bool):
                    value = [value]
                if (
                    isinstance(value, list | tuple)
                    and value
                    and all(isinstance(v, list | tuple) for v in value)
                ):
                    value = value[example]  # one list per example: ragged locations
                if (
                    not isinstance(value, list | tuple)
                    or not value
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
                ):
                    raise self.error(
                        f"pos={{{name}}} must be an int, a list of ints, or one list of ints "
                        f"per example; got {value!r}",
                        stmt.line,
                        token="{" + name + "}",
                    )
                return [self.position(Index(v), prompt, stmt) for v in value]
            case _:
                return [self.position(selector, prompt, stmt)]

    def single(self, selector, stmt: Edit, axis: str) -> int:
        """The one integer a layer= or head= selector names: a number, or a `{name}` holding
        one (a sweep is refused)."""
        if isinstance(selector, Index):
            return selector.value
        if isinstance(selector, SelectorVar):
            value = self.lookup(Var(selector.name), stmt.line)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        raise self.error(
            f"{axis}={selector_text(selector)} is not a single {axis}",
            stmt.line,
            hint=f"use an integer, or a sweep such as {axis}=* or {axis}=[1, 2]",
            token=f"{axis}=",
        )

    def aligned(self, base_pos, prompt: Prompt, src: Prompt, stmt: Edit) -> list[int]:
        """Source positions for base positions, aligned from the end of the prompts."""
        shift = len(src) - len(prompt)
        out = [p + shift for p in base_pos]
        if any(not 0 <= p < len(src) for p in out):
            raise self.error(
                f"base ({len(prompt)} tokens) and source ({len(src)} tokens) differ in length, "
                "and aligning them from the end leaves some positions without a source",
                stmt.line,
                hint="map positions explicitly with pos=a->b (base a takes source b)",
                token="pos=" if stmt.selector("pos") is not None else None,
            )
        return out
