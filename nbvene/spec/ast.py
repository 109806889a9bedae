"""The spec as data: frozen dataclasses that know nothing of torch or models.

A `Spec` is what a `%%intervene` cell says, parsed; `nbvene.bind` binds it to a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

Verb = Literal["patch", "restore", "add", "subtract", "zero", "mean", "collect", "steer"]
"""Statements that intervene on (or read) a site."""
VERBS: tuple[Verb, ...] = get_args(Verb)

Method = Literal["mean_diff", "pca", "diff"]
"""Steering vectors made from prompts: `by mean_diff({kind}, {cruel})`."""
CONTRASTS: tuple[Method, ...] = get_args(Method)

Estimate = Literal["exact", "attribution"]
"""How a sweep is measured: run exactly, or estimated by attribution patching."""
ESTIMATES: tuple[Estimate, ...] = get_args(Estimate)

PhaseName = Literal["prompt", "generated"]

CircuitMethod = Literal["eap", "eap-ig", "acdc", "given"]
"""How `discover: circuit by ...` finds the circuit: edge attribution patching, EAP with
integrated gradients, ACDC's greedy pruning by ablation; or `given`: `circuit of [edges]`
names it, and only its ablation check runs."""
DISCOVERIES: tuple[CircuitMethod, ...] = ("eap", "eap-ig", "acdc")
"""The methods `by` names."""

Ablation = Literal["corrupted", "mean"]
"""What an edge outside the circuit carries: its sender's output in the corrupted (source) run,
or its mean over the clean (base) prompts."""
ABLATIONS: tuple[Ablation, ...] = get_args(Ablation)


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A double-quoted string: a prompt, a token text or a subject."""

    value: str


@dataclass(frozen=True)
class Var:
    """`{name}`: a value taken from the namespace given to `nv.run`."""

    name: str


@dataclass(frozen=True)
class Batch:
    """`["a", "b"]`: several prompts, one batch."""

    items: tuple[Text | Var, ...]


Prompts = Text | Var | Batch


# --- selectors (the value of `layer=`, `pos=`, `head=`) ---------------------------------------


@dataclass(frozen=True)
class Index:
    """One integer; negative counts from the end."""

    value: int


@dataclass(frozen=True)
class Span:
    """`a..b`, both ends included; swept."""

    start: int
    stop: int


@dataclass(frozen=True)
class Items:
    """`[1, 4, 7]`; swept."""

    items: tuple[int, ...]


@dataclass(frozen=True)
class All:
    """`*`: every value; swept."""


@dataclass(frozen=True)
class TokenText:
    """`"Tower"`: the positions of the tokens that make up this text in the prompt."""

    text: str


@dataclass(frozen=True)
class Last:
    """`last`: the last real (non-padding) token."""


@dataclass(frozen=True)
class SelectorVar:
    """`{name}`: an int, a list of ints, or one list per example (ragged) from the namespace."""

    name: str


@dataclass(frozen=True)
class Phase:
    """`pos=prompt` or `pos=generated`: the prompt's positions, or each generated token's."""

    name: PhaseName


@dataclass(frozen=True)
class Mapped:
    """`a->b`: base position a takes the source's position b."""

    base: Index | Last | TokenText
    source: Index | Last | TokenText


Selector = Index | Span | Items | All | TokenText | Last | SelectorVar | Mapped | Phase

SWEPT = (Span, Items, All)


def is_swept(selector: Selector) -> bool:
    """Whether a selector makes a grid axis (one result per value)."""
    return isinstance(selector, SWEPT)


# --- statements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contrast:
    """`mean_diff({kind}, {cruel})`: a steering vector made from contrasting prompts at the
    statement's site: `mean_diff` (of last-token activations), `pca` (first principal component
    of paired differences) or `diff` (two prompts, one vector per position, aligned from 0)."""

    method: Method
    positive: Prompts
    negative: Prompts
    normalized: bool = False


@dataclass(frozen=True)
class Slider:
    """`slider(-4, 4, 1)`: a strength set by a slider (low, high, start value)."""

    low: float
    high: float
    start: float


@dataclass(frozen=True)
class Strengths:
    """`0..8 step 2` or `[0, 1, 2]`: a strength sweep, one result per value."""

    values: tuple[float, ...]


@dataclass(frozen=True)
class Scaled:
    """`by {vector} * 2`: a vector from the namespace (or made from prompts), times a number,
    a slider or a strength sweep."""

    vector: Var | Contrast
    scale: float | Slider | Strengths = 1.0


@dataclass(frozen=True)
class Call:
    """`via rotated(k=1)`: an intervention built by name, with keyword arguments (numbers,
    strings, lists of integers or `{name}` values); the trainable family lives in
    `nbvene.train`."""

    name: str
    args: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Edit:
    """`patch: head_query_output layer=* head=3 pos=-1`, or any other verb in VERBS: one
    statement that changes (or reads) a site. The modules that do it at run time are
    `nbvene.interventions`."""

    verb: Verb
    component: str
    where: tuple[tuple[str, Selector], ...] = ()
    window: int | None = None
    by: Scaled | None = None
    over: Prompts | None = None
    via: Var | Call | None = None
    line: int = field(default=0, compare=False)
    source: str | None = None
    """`from s1`: the named source the values come from (None: the `source:` line)."""
    into: str | None = None
    """`into s2`: apply to that named source's run instead of the base run (serial)."""

    def selector(self, axis: str) -> Selector | None:
        return dict(self.where).get(axis)


@dataclass(frozen=True)
class Source:
    """`source s1: "..."`: a named source, read by statements that say `from s1`."""

    name: str
    prompts: Prompts
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Corrupt:
    """`corrupt: noise 3σ on "The Eiffel Tower"` (ROME): Gaussian noise on the subject's embeddings.

    `relative` scales by σ, the standard deviation of the input embeddings the model consumes.
    """

    scale: float
    subject: Text | Var
    relative: bool = True
    samples: int = 1
    seed: int = 0
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Metric:
    """`metric: logit_diff(" Mary", " John") normalized`."""

    name: str
    args: tuple[str | int | Var, ...] = ()
    """Token texts, or token ids / class indices, or `{name}`s holding one of those (or, for
    `discover:`, one per base prompt)."""
    normalized: bool = False
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Generate:
    """`generate: "I think that you are" max_new_tokens=30`: generate text (from base: if no
    prompt is given), greedily or sampled (`temperature=`, `seed=`), up to a `stop=` string."""

    prompt: Text | Var | None = None
    max_new_tokens: int = 30
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Discover:
    """`discover: circuit by eap top=200` (or `by eap-ig steps=5 threshold=0.1`, `by acdc
    tau=0.02`, or `of [edges]`: check a given circuit): find the edges between components
    that carry the metric from the base (clean) prompts to the source (corrupted) ones.
    Options not written are None (their defaults are the binder's: top=100 for EAP, steps=5
    for EAP-IG, tau=0.02 for ACDC)."""

    method: CircuitMethod = "eap"
    top: int | None = None
    threshold: float | None = None
    tau: float | None = None
    steps: int | None = None
    ablation: Ablation = "corrupted"
    edges: tuple[str, ...] = ()
    """`circuit of [embed -> a0.h1.q, a0.h1 -> logits]`: the edges of a given circuit, by
    name (`Edge.name`), method `given`."""
    line: int = field(default=0, compare=False)
