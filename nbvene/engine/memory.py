"""How many rows one forward pass may hold: the estimate that turns `max_memory` into rows, and
`Budget`, the one loop every forward pass runs its rows through (chunks of at most
`max_batch`, halved and retried on out-of-memory, a clear error when one row does not fit)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from nbvene.bind.plan import Plan
from nbvene.errors import NbveneError
from nbvene.sites.families import dimensions

T = TypeVar("T")
R = TypeVar("R")

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 2**10,
    "mb": 2**20,
    "gb": 2**30,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}

# What allocators say when they fail, for backends (and older torch) that raise a plain
# RuntimeError rather than torch.OutOfMemoryError: CUDA/HIP/XPU/MPS "… out of memory", the CPU's
# "DefaultCPUAllocator: can't allocate memory", cuBLAS/cuDNN "…_STATUS_ALLOC_FAILED".
_OUT_OF_MEMORY = re.compile(
    r"out of memory|can't allocate memory|cannot allocate memory|not enough memory"
    r"|STATUS_ALLOC_FAILED|failed to allocate",
    re.IGNORECASE,
)


def parse_bytes(budget: int | str) -> int:
    """`2**30`, `"512MB"`, `"2 GB"` → bytes (binary units); `"auto"` needs the model
    (`limit_bytes`)."""
    if isinstance(budget, int):
        return budget
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*", str(budget).lower())
    if not m:
        raise NbveneError(
            f"max_memory={budget!r} is not a size", hint='write e.g. max_memory="2GB" or 2**31'
        )
    unit = (m.group(2) or "").rstrip("b") + ("b" if m.group(2) else "")
    return int(float(m.group(1)) * _UNITS.get(unit, 1))


AUTO = "auto"
HEADROOM = 0.5
"""The share of a device's free memory that `max_memory="auto"` gives the activations: the
estimate is generous, but the allocator fragments, other processes allocate, and a pass
briefly holds copies (the outputs being joined, the logits being read) that it does not count."""


def free_bytes(device: torch.device) -> int:
    """The memory free on `device` now: on CUDA what the driver reports free
    (`torch.cuda.mem_get_info`) plus what torch's caching allocator holds unused; on MPS the
    recommended working set less what the driver has allocated; elsewhere the machine's
    available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "mps":
        return torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
    return available_ram()


def available_ram() -> int:
    """The RAM the kernel could give without swapping: /proc/meminfo's MemAvailable, or
    psutil's figure where there is no /proc (macOS, Windows) and psutil is installed."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        raise NbveneError(
            'max_memory="auto" cannot tell how much RAM is free here',
            hint='give a size, e.g. max_memory="4GB" (or pip install psutil)',
        ) from None
    return psutil.virtual_memory().available


def model_devices(model: nn.Module) -> list[torch.device]:
    """The devices the model's forward pass computes on: those of its parameters and buffers,
    and the execution devices of accelerate's hooks (weights offloaded to CPU or disk are on
    `meta` and run on the hook's device); the CPU for a model with neither."""
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    for module in model.modules():
        hook = getattr(module, "_hf_hook", None)
        execution = getattr(hook, "execution_device", None)
        if isinstance(execution, int):  # accelerate's shorthand for a CUDA device's index
            execution = torch.device("cuda", execution)
        if execution is not None:
            devices.add(torch.device(execution))
    devices.discard(torch.device("meta"))
    return sorted(devices, key=str) or [torch.device("cpu")]


@dataclass(frozen=True)
class Free:
    """The free memory `max_memory="auto"` sized batches from: the tightest of the model's
    devices (every device holds some rows' activations at once)."""

    device: torch.device
    bytes: int

    @property
    def budget(self) -> int:
        """The bytes the activations may take (a `HEADROOM` share of what is free)."""
        return int(self.bytes * HEADROOM)

    def __str__(self) -> str:
        return f"{self.bytes / 1e9:.1f} GB free on {self.device}"


def free_memory(model: nn.Module) -> Free:
    """The least free memory among the devices the model computes on."""
    return min((Free(d, free_bytes(d)) for d in model_devices(model)), key=lambda f: f.bytes)


def limit_bytes(model: nn.Module, budget: int | str) -> int:
    """`max_memory` in bytes: a size as given, or `"auto"`'s share of the model's free memory."""
    return free_memory(model).budget if is_auto(budget) else parse_bytes(budget)


def is_auto(budget: int | str) -> bool:
    """Whether `max_memory` asks for the free memory of the model's devices."""
    return isinstance(budget, str) and budget.strip().lower() == AUTO


def chosen(plan: Plan, budget: int | str, max_batch: int) -> str | None:
    """What `max_memory="auto"` chose, for the dry run: the free memory it read and the rows a
    pass that gives (None for a size given)."""
    if not is_auto(budget):
        return None
    fit = rows_within(plan, budget)
    per_pass = f"{fit} rows a pass" if fit <= max_batch else f"{max_batch} rows a pass (max_batch)"
    return f"max_memory=auto: {free_memory(plan.model)} → {per_pass}"


def token_bytes(model: nn.Module, tokens: int, *, cache: bool = False, grad: bool = False) -> int:
    """A generous estimate of the memory one row of `tokens` tokens needs during a forward pass
    without grad: what is alive at once inside one block, and the row's logits at every token
    (the runs that keep activations compute the LM head everywhere).

    Per token, in the model's dtype: the residual stream and its norm, the query/key/value
    projections and their rotated and repeated copies (12 × hidden), the MLP's gate, up and
    activated product (3 × intermediate), and the attention scores and probabilities, upcast to
    float32 (4 × heads × tokens); plus one row of float32 logits (the vocabulary: every pass
    computes the LM head at the positions it reads only). With `cache`, a KV cache too (keys
    and values of every layer, at most 2 × hidden per token and layer); with `grad` (a pass
    with a backward pass), every layer's activations, kept for it."""
    dims = dimensions(model)
    hidden = dims.hidden or 1024
    inner = dims.intermediate or 4 * hidden
    heads = dims.heads or 16
    vocab = dims.vocab or 50_000
    param = next(model.parameters(), None)
    dtype = param.element_size() if param is not None else 4
    per_token = dtype * (12 * hidden + 3 * inner) + 4 * 4 * heads * tokens
    layers = dims.layers or 1
    if grad:
        per_token *= layers
    if cache:
        per_token += dtype * 2 * hidden * layers
    return tokens * per_token + 4 * vocab


def longest(plan: Plan) -> int:
    """The most tokens any forward pass of the plan runs: base, sources, and `mean:` prompts."""
    prompts = [*plan.base, *(plan.source or ()), *(p for ps in plan.named.values() for p in ps)]
    prompts += [p for op in plan.ops if op.value == "mean" for p in op.mean_prompts]
    return max(len(p) for p in prompts)


def row_bytes(plan: Plan, *, grad: bool = False) -> int:
    """The memory one row of the plan needs in a forward pass (an estimate, see `token_bytes`)."""
    return token_bytes(plan.model, longest(plan), grad=grad)


def rows_within(plan: Plan, budget: int | str, *, grad: bool = False) -> int:
    """The largest chunk that fits `budget`; a clear error when not even one row does."""
    return rows_fitting(plan.model, longest(plan), budget, grad=grad)


def rows_fitting(
    model: nn.Module, tokens: int, budget: int | str, *, cache: bool = False, grad: bool = False
) -> int:
    """How many rows of `tokens` tokens fit `budget` (bytes, a size, or `"auto"`: a share of
    the model's free memory); at least one, else an error."""
    limit = limit_bytes(model, budget)
    need = token_bytes(model, tokens, cache=cache, grad=grad)
    if need > limit:
        given = f"max_memory={budget!r}"
        if is_auto(budget):
            given += f" ({free_memory(model)}, {HEADROOM:.0%} of it for activations)"
        raise NbveneError(
            f"{given} is less than one row needs (about {need / 2**20:.1f} MiB "
            f"for {tokens} tokens)",
            hint="raise max_memory, or shorten the prompts",
        )
    return max(1, limit // need)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation failure, in any of the forms backends raise it."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and bool(_OUT_OF_MEMORY.search(str(error)))


class Budget:
    """The rows one forward pass may hold, for every pass of one call (source, baseline,
    `mean:`, grid, collection, extraction, generation, training steps).

    Starts at `max_batch` (lowered to what `max_memory` allows, where the caller knows the
    prompts' length); an out-of-memory halves it, and later passes of the same call keep the
    halved size. Out of memory with one row is an `NbveneError` saying what to change.

    >>> budget = Budget(64)
    >>> for rows, out in budget.chunks(range(300), lambda rows: run(rows), "source run"):
    ...     ...
    """

    def __init__(self, max_batch: int = 64):
        if max_batch < 1:
            raise NbveneError(f"max_batch must be at least 1, got {max_batch}")
        self.size = max_batch
        self.halvings = 0

    @classmethod
    def within(
        cls,
        max_batch: int,
        max_memory: int | str | None,
        model: nn.Module,
        tokens: int,
        *,
        cache: bool = False,
    ) -> Budget:
        """`max_batch`, lowered to the rows of `tokens` tokens that fit `max_memory` (with a
        KV cache: `cache`)."""
        if max_memory is not None:
            max_batch = min(max_batch, rows_fitting(model, tokens, max_memory, cache=cache))
        return cls(max_batch)

    def chunks(
        self,
        items: Sequence[T],
        run: Callable[[list[T]], R],
        what: str,
        *,
        weigh: Callable[[T], int] | None = None,
        per_row: int = 1,
        most: int | None = None,
    ) -> Iterator[tuple[list[T], R]]:
        """`run` on consecutive chunks of `items`, at most `size` a chunk; yields each chunk with
        what `run` returned. A chunk that runs out of memory is retried at half the size.

        With `weigh` (an item's tokens), a chunk holds as many items as their tokens allow: at
        most what `size` rows of `per_row` tokens hold, and at most `most` (at least one item).
        Several items in one row's tokens that run out of memory are retried in halves too.
        """
        items, done = list(items), 0
        count = len(items)  # the most items a chunk holds
        while done < len(items):
            end = min(self._end(items, done, weigh, per_row, most), done + count)
            chunk = items[done:end]
            try:
                out = run(chunk)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                failure = _first_line(error)
            else:
                yield chunk, out
                done += len(chunk)
                continue
            if self.size == 1 and len(chunk) > 1:  # one row's tokens, but several items
                _release_cached()
                count = len(chunk) // 2
                continue
            self.halve(what, failure, len(chunk))  # outside `except`: the failed pass is freed

    def _end(self, items: list, done: int, weigh, per_row: int, most: int | None) -> int:
        """Where the chunk from `done` ends."""
        if weigh is None:
            return done + self.size
        room = self.size * per_row if most is None else min(self.size * per_row, most)
        end, total = done + 1, weigh(items[done])
        while end < len(items) and total + weigh(items[end]) <= room:
            total += weigh(items[end])
            end += 1
        return end

    def run(self, run: Callable[[int], R], what: str) -> R:
        """`run(size)` until it fits: for a pass that cannot be split into independent chunks (a
        training step, whose micro-batches' gradients add up), which starts over when halved."""
        while True:
            size = self.size
            try:
                return run(size)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                failure = _first_line(error)
            self.halve(what, failure, size)

    def once(self, run: Callable[[], R], rows: int, what: str) -> R | None:
        """`run()`: one pass of `rows` rows that is not split into chunks (the source run and
        the baseline together). After an out-of-memory, None and the size halved, for the
        caller to run those rows otherwise (in their own passes, in chunks)."""
        try:
            return run()
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            failure = _first_line(error)
        self.halve(what, failure, rows)  # outside `except`: the failed pass is freed
        return None

    def halve(self, what: str, message: str, rows: int) -> None:
        """Halve the size after an out-of-memory in a pass of `rows` rows, or give up at one."""
        _release_cached()
        if rows <= 1:
            raise NbveneError(
                f"out of memory with one row per forward pass, in the {what} ({message})",
                hint="shorten the prompts, load the model in a smaller dtype "
                "(from_pretrained(..., dtype=torch.bfloat16)), or run on a device with more memory",
            )
        self.size = max(1, min(self.size, rows) // 2)
        self.halvings += 1


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _release_cached() -> None:
    """Give the failed pass's cached blocks back to the device before the retry."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()
