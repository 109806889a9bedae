"""Trainable interventions: small modules with `forward(base, source)`, as in the spec's
`via rotated(k=1)`. Their parameters are made at the first call, when the width of the units is
known (or by `build(width)`), from their own seed; they compute in float32 whatever the model's
dtype.

>>> rot = Rotated(k=1, width=16)      # DAS: rotate, swap the first rotated dimension, rotate back
>>> rot.basis.shape                   # the learned direction(s), one column each
torch.Size([16, 1])
"""

from __future__ import annotations

import inspect
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from nbvene.errors import NbveneError, did_you_mean
from nbvene.interventions import Intervention


class Trainable(Intervention):
    """A learned intervention on units of one width; subclasses define `make` and `intervene`.

    `schedule(fraction)` is called by `nv.train` after every step with the fraction of training
    done (temperatures anneal with it); `penalty()` is added to the loss.
    """

    kind: ClassVar[str] = ""
    """The name that builds it in a spec: `via rotated(k=1)`."""

    def __init__(self, *, seed: int = 0, width: int | None = None):
        super().__init__()
        self.seed = seed
        self.width: int | None = None
        if width is not None:
            self.build(width)

    # --- making the parameters -----------------------------------------------------------------

    def build(self, width: int, device: torch.device | str | None = None) -> Trainable:
        """Make the parameters for units of `width` (the same numbers for the same seed)."""
        if self.width is not None:
            self.check(width)
            return self
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.make(width)
        self.width = width
        if device is not None:
            self.to(device)
        return self

    def check(self, width: int) -> None:
        if self.width is not None and width != self.width:
            raise NbveneError(
                f"{self.describe()} was made for units of width {self.width}, and this site's "
                f"units have {width}",
                hint="use it on the site (and model) it was trained on",
            )

    def make(self, width: int) -> None:
        """Create parameters and buffers for units of `width`."""

    # --- the intervention ------------------------------------------------------------------------

    per_example: bool = False
    """True when it treats each base example its own way: the engine then also passes
    `examples`, the base example of each unit row."""

    def forward(
        self, base: torch.Tensor, source: torch.Tensor | None, examples: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.width is None:
            self.build(base.shape[-1], base.device)
        self.check(base.shape[-1])
        if self.needs_source and source is None:
            raise NbveneError(f"{self.describe()} needs a source: add a source: line")
        # float32 parameters, on the device they were made or loaded on; the result goes back
        # to the site's device and dtype (a bf16 model on several devices)
        at = next(self.parameters(), base).device
        unit = base.to(at, torch.float32)
        source = None if source is None else source.to(at, torch.float32)
        if self.per_example:
            new = self.intervene(unit, source, None if examples is None else examples.to(at))
        else:
            new = self.intervene(unit, source)
        return new.to(base.device, base.dtype)

    def intervene(self, base: torch.Tensor, source: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def schedule(self, fraction: float) -> None:
        """Follow the training schedule (`fraction` of the steps done, 0 to 1)."""

    def penalty(self) -> torch.Tensor | None:
        """A term added to the loss (e.g. to keep a learned boundary small), or None."""
        return None

    # --- what it learned -------------------------------------------------------------------------

    @property
    def basis(self) -> torch.Tensor:
        """The directions it intervenes on: a (width, k) float32 tensor, one column each."""
        raise NotImplementedError(f"{self.kind} has no basis")

    def config(self) -> dict:
        """The arguments that build it again (JSON values), as written after `via`."""
        return {"seed": self.seed}

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "seed")
        return f"{self.kind}({args})"

    def extra_repr(self) -> str:
        return self.describe()[len(self.kind) + 1 : -1] + f", width={self.width}"


def _orthonormal(rows: int, cols: int) -> nn.Module:
    """A (rows, cols) weight kept with orthonormal columns (rows ≥ cols), starting random."""
    linear = nn.Linear(cols, rows, bias=False)
    nn.init.orthogonal_(linear.weight)
    return orthogonal(linear)


class Rotated(Trainable):
    """Distributed alignment search (DAS): rotate the units by a learned orthogonal matrix,
    take the source's first `k` rotated dimensions (or `dims`), rotate back."""

    kind = "rotated"

    def __init__(self, k: int = 1, *, dims=None, seed: int = 0, width: int | None = None):
        self.k = len(dims) if dims is not None else _positive(k, "k")
        self.dims = None if dims is None else tuple(int(d) for d in dims)
        super().__init__(seed=seed, width=width)

    def make(self, width: int) -> None:
        chosen = _chosen(self.dims, self.k, width, self.describe())
        self.rotation = _orthonormal(width, width)
        mask = torch.zeros(width, dtype=torch.bool)
        mask[list(chosen)] = True
        self.register_buffer("swapped", mask, persistent=False)

    @property
    def matrix(self) -> torch.Tensor:
        """The rotation R: rotated units are `units @ R`."""
        return self.rotation.weight

    def intervene(self, base, source):
        r = self.matrix
        return torch.where(self.swapped, source @ r, base @ r) @ r.T

    @property
    def basis(self) -> torch.Tensor:
        return self.matrix[:, self.swapped].detach().float().cpu()

    def config(self) -> dict:
        chosen = {"dims": list(self.dims)} if self.dims is not None else {"k": self.k}
        return {**chosen, "seed": self.seed}


class _Projected(Trainable):
    """An intervention that learns a (width, k) orthonormal basis, `projection`: its basis."""

    def make(self, width: int) -> None:
        _chosen(None, self.k, width, self.describe())
        self.projection = _orthonormal(width, self.k)

    @property
    def basis(self) -> torch.Tensor:
        return self.projection.weight.detach().float().cpu()

    def config(self) -> dict:
        return {"k": self.k, "seed": self.seed}


class LowRankRotated(_Projected):
    """DAS with a learned (width, k) orthonormal basis Q: the units' part in span(Q) is
    replaced by the source's, `base + (source - base) @ Q @ Qᵀ`."""

    kind = "low_rank_rotated"

    def __init__(self, k: int = 1, *, seed: int = 0, width: int | None = None):
        self.k = _positive(k, "k")
        super().__init__(seed=seed, width=width)

    def intervene(self, base, source):
        q = self.projection.weight
        return base + ((source - base) @ q) @ q.T


class Boundless(Trainable):
    """Boundless DAS: a learned rotation, and a learned boundary b (a fraction of the width):
    rotated dimension j takes the source in proportion sigmoid((b·width − j − ½) / T), with the
    temperature T annealed from `t_start` to `t_end`; `penalty` × b is added to the loss, so the
    boundary shrinks to the dimensions that matter."""

    kind = "boundless"

    def __init__(
        self,
        *,
        init: float = 0.5,
        t_start: float = 1.0,
        t_end: float = 0.01,
        penalty: float = 1.0,
        seed: int = 0,
        width: int | None = None,
    ):
        if not 0 < init <= 1:
            raise NbveneError(f"boundless: init is a fraction of the width in (0, 1], got {init}")
        self.init, self.t_start, self.t_end, self.weight = init, t_start, t_end, penalty
        super().__init__(seed=seed, width=width)

    def make(self, width: int) -> None:
        self.rotation = _orthonormal(width, width)
        self.boundary = nn.Parameter(torch.tensor(float(self.init)))
        self.register_buffer("temperature", torch.tensor(float(self.t_start)))
        self.register_buffer("place", torch.arange(width, dtype=torch.float32), persistent=False)

    def mask(self) -> torch.Tensor:
        b = self.boundary.clamp(1e-3, 1.0) * self.width
        return torch.sigmoid((b - self.place - 0.5) / self.temperature)

    def intervene(self, base, source):
        r = self.rotation.weight
        rb, rs = base @ r, source @ r
        m = self.mask()
        return ((1 - m) * rb + m * rs) @ r.T

    def schedule(self, fraction: float) -> None:
        _anneal(self.temperature, self.t_start, self.t_end, fraction)

    def penalty(self) -> torch.Tensor:
        return self.weight * self.boundary.clamp(1e-3, 1.0)

    @property
    def k(self) -> int:
        """How many rotated dimensions it swaps (at least 1)."""
        return max(1, round(float(self.boundary.detach().clamp(1e-3, 1.0)) * self.width))

    @property
    def basis(self) -> torch.Tensor:
        return self.rotation.weight[:, : self.k].detach().float().cpu()

    def config(self) -> dict:
        return {
            "init": self.init,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "penalty": self.weight,
            "seed": self.seed,
        }


class SigmoidMask(Trainable):
    """A learned mask over the units themselves (no rotation): unit i takes the source in
    proportion sigmoid(mᵢ / T), T annealed from `t_start` to `t_end`; `penalty` × the mean
    mask is added to the loss."""

    kind = "sigmoid_mask"

    def __init__(
        self,
        *,
        t_start: float = 1.0,
        t_end: float = 0.01,
        penalty: float = 0.1,
        seed: int = 0,
        width: int | None = None,
    ):
        self.t_start, self.t_end, self.weight = t_start, t_end, penalty
        super().__init__(seed=seed, width=width)

    def make(self, width: int) -> None:
        self.logits = nn.Parameter(torch.zeros(width))
        self.register_buffer("temperature", torch.tensor(float(self.t_start)))

    def mask(self) -> torch.Tensor:
        return torch.sigmoid(self.logits / self.temperature)

    def intervene(self, base, source):
        m = self.mask()
        return (1 - m) * base + m * source

    def schedule(self, fraction: float) -> None:
        _anneal(self.temperature, self.t_start, self.t_end, fraction)

    def penalty(self) -> torch.Tensor:
        return self.weight * self.mask().mean()

    @property
    def basis(self) -> torch.Tensor:
        chosen = (self.logits > 0).nonzero().flatten().cpu()
        return torch.eye(self.width)[:, chosen]

    def config(self) -> dict:
        return {
            "t_start": self.t_start,
            "t_end": self.t_end,
            "penalty": self.weight,
            "seed": self.seed,
        }


class LoReFT(_Projected):
    """LoReFT (Wu et al. 2024): edit the units in a learned k-dimensional subspace R (rows
    orthonormal), `h + (W h + b − R h) Rᵀ`. Needs no source: it learns what to write."""

    kind = "loreft"
    needs_source = False

    def __init__(self, k: int = 4, *, seed: int = 0, width: int | None = None):
        self.k = _positive(k, "k")
        super().__init__(seed=seed, width=width)

    def make(self, width: int) -> None:
        super().make(width)
        self.learned = nn.Linear(width, self.k)

    def intervene(self, base, source):
        r = self.projection.weight  # (width, k): its columns are R's rows
        return base + (self.learned(base) - base @ r) @ r.T


class LowRankAdd(Trainable):
    """Add a learned low-rank function of the units, `h + (h A + c) Bᵀ` with A, B of shape
    (width, k); B starts at zero, so it starts as the identity. Needs no source."""

    kind = "low_rank_add"
    needs_source = False

    def __init__(self, k: int = 4, *, seed: int = 0, width: int | None = None):
        self.k = _positive(k, "k")
        super().__init__(seed=seed, width=width)

    def make(self, width: int) -> None:
        _chosen(None, self.k, width, self.describe())
        self.down = nn.Linear(width, self.k)
        self.up = nn.Linear(self.k, width, bias=False)
        nn.init.zeros_(self.up.weight)

    def intervene(self, base, source):
        return base + self.up(self.down(base))

    @property
    def basis(self) -> torch.Tensor:
        q, _ = torch.linalg.qr(self.up.weight.detach().float())
        return q.cpu()

    def config(self) -> dict:
        return {"k": self.k, "seed": self.seed}


class Interchange(Trainable):
    """A fixed subspace, nothing learned: take the source's units `dims`, the first `subspace`
    units (an int), or the source's part in span of a (width, k) `subspace` tensor. `dims` may
    also be a list of lists, one per base example: each example swaps exactly its own units
    (pyvene merges such subspaces across the batch)."""

    kind = "interchange"

    def __init__(
        self,
        *,
        dims=None,
        subspace=None,
        k: int | None = None,
        seed: int = 0,
        width: int | None = None,
    ):
        given = [x is not None for x in (dims, subspace, k)]
        if sum(given) != 1:
            raise NbveneError(
                "interchange takes one of dims=[...] or subspace=k or subspace={basis}",
                hint="e.g. via interchange(dims=[0, 3]), or via interchange(subspace={basis})",
            )
        if isinstance(dims, torch.Tensor):  # a (examples, k) tensor of units works as lists
            dims = dims.tolist()
        self.per_example = dims is not None and any(isinstance(d, list | tuple) for d in dims)
        if self.per_example:
            self.dims = _per_example(dims)
        else:
            self.dims = None if dims is None else tuple(int(d) for d in dims)
        self.given = subspace if isinstance(subspace, torch.Tensor) else None
        if self.given is not None and self.given.dim() != 2:
            raise NbveneError(
                f"subspace= must be a (width, k) tensor, got shape {tuple(self.given.shape)}"
            )
        if self.given is not None:
            self.k = self.given.shape[1]
        elif self.per_example:
            self.k = max(len(d) for d in self.dims)
        elif self.dims is not None:
            self.k = len(self.dims)
        else:
            self.k = _positive(subspace if subspace is not None else k, "subspace")
        super().__init__(seed=seed, width=width)

    def make(self, width: int) -> None:
        if self.given is not None:
            if self.given.shape[0] != width:
                raise NbveneError(
                    f"subspace= has {self.given.shape[0]} rows, and this site's units have {width}"
                )
            q, _ = torch.linalg.qr(self.given.detach().float().cpu())
        elif self.per_example:  # one 0/1 row per example: the units that example swaps
            mask = torch.zeros(len(self.dims), width)
            for i, dims in enumerate(self.dims):
                mask[i, list(_chosen(dims, len(dims), width, f"interchange, example {i}"))] = 1
            self.register_buffer("masks", mask)
            return
        else:
            chosen = _chosen(self.dims, self.k, width, self.describe())
            q = torch.eye(width)[:, list(chosen)]
        self.register_buffer("fixed", q.contiguous())

    def intervene(self, base, source, examples=None):
        if self.per_example:
            if examples is None:
                raise NbveneError(
                    "interchange with one dims list per example needs each row's example",
                    hint="use it in a spec run by nv.run, which passes them",
                )
            return base + (source - base) * self.masks[examples.to(self.masks.device)]
        q = self.fixed
        return base + ((source - base) @ q) @ q.T

    @property
    def basis(self) -> torch.Tensor:
        if self.per_example:
            raise NbveneError(
                "interchange with one dims list per example has no single basis",
                hint="use .masks: one 0/1 row of units per example",
            )
        return self.fixed.detach().float().cpu()

    def config(self) -> dict:
        if self.dims is not None:
            return {
                "dims": [list(d) for d in self.dims] if self.per_example else list(self.dims),
                "seed": self.seed,
            }
        return {"k": self.k, "seed": self.seed}


CONSTRUCTORS: dict[str, type[Trainable]] = {
    cls.kind: cls
    for cls in (Rotated, LowRankRotated, Boundless, SigmoidMask, LoReFT, LowRankAdd, Interchange)
}


def build(name: str, args: dict) -> Trainable:
    """The intervention `via name(**args)` stands for; errors say what it takes."""
    cls = CONSTRUCTORS.get(name)
    if cls is None:
        raise NbveneError(
            f"unknown intervention {name!r}",
            hint=did_you_mean(name, CONSTRUCTORS) or "interventions: " + ", ".join(CONSTRUCTORS),
        )
    takes = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "width")]
    for key in args:
        if key not in takes:
            raise NbveneError(
                f"{name} takes no {key!r}",
                hint=did_you_mean(key, takes) or f"{name} takes " + ", ".join(takes),
            )
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
    try:
        return cls(**args)
    except (TypeError, ValueError) as e:
        if isinstance(e, NbveneError):
            raise
        raise NbveneError(f"{name}: {e}") from None


def _positive(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NbveneError(f"{what} must be a positive integer, got {value!r}")
    return value


def _per_example(dims) -> tuple[tuple[int, ...], ...]:
    """dims=[[0], [2, 5], ...]: one list of units per base example, each a list of integers."""
    if not all(isinstance(d, list | tuple) for d in dims):
        raise NbveneError(
            f"dims mixes integers and lists: {list(dims)}",
            hint="give one list of units for all, dims=[0, 3], or one per example, "
            "dims=[[0], [3], [1, 2]]",
        )
    return tuple(tuple(int(u) for u in d) for d in dims)


def _chosen(dims, k: int, width: int, what: str) -> tuple[int, ...]:
    """The dimensions swapped: `dims`, or the first k; checked against the width."""
    if dims is None:
        if k > width:
            raise NbveneError(
                f"{what}: k={k} is more than the {width} units at this site",
                hint=f"k is at most {width}",
            )
        return tuple(range(k))
    bad = [d for d in dims if not -width <= d < width]
    if bad or len(set(d % width for d in dims)) != len(dims):
        raise NbveneError(
            f"{what}: dims {list(dims)} are not distinct dimensions of the {width} units",
            hint=f"units are numbered 0 to {width - 1}",
        )
    return tuple(d % width for d in dims)


def _anneal(temperature: torch.Tensor, start: float, end: float, fraction: float) -> None:
    """Geometric annealing: as many steps from 10 to 1 as from 1 to 0.1. Kept in a buffer, so
    a saved intervention keeps the temperature it was trained down to."""
    temperature.fill_(start * (end / start) ** min(max(fraction, 0.0), 1.0))
