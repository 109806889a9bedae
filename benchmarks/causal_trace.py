"""Time one causal-tracing sweep several ways, in one process, on the same inputs.

The sweep is a ROME-style restore: run the corrupted prompt with the clean prompt's
`block_output` (a decoder layer's output hidden state) put back at one (layer, position), for
every cell, and read p(target) at the last position. Every method returns a (layers, positions)
tensor of probabilities, and each is checked against nbvene's (exit status 1 beyond 1e-4).
On SmolLM2 the table also has differs.py's competent plain-torch baselines (start at the
patched layer; and reuse the base run's keys and values before the patch) and the lower bound.

`--workload` also takes differs.py's workloads (head-z, long-200, ...) and `steering`
(steering.py's), which run those scripts' own methods and tables in this process;
`every` runs them all, `all` (the default) the two causal-tracing workloads.

    .venv/bin/python benchmarks/causal_trace.py                      # both workloads, ~6 min
    .venv/bin/python benchmarks/causal_trace.py --workload gpt2 --skip-slow
    .venv/bin/python benchmarks/causal_trace.py --workload head-z --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import importlib.metadata as metadata
import io
import itertools
import os
import platform
import re
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import differs
import steering
import torch
import transformers
from machine import load_average
from torch import nn

import nbvene as nv

TOLERANCE = 1e-4  # the largest |p - p_nbvene| accepted, in probability


# --- the workloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A corrupted base, a clean source of the same length, and a one-token target."""

    name: str
    model: nn.Module
    tokenizer: object
    blocks: Sequence[nn.Module]  # the decoder layers, whose outputs are `block_output`
    base: str
    source: str
    target: str
    base_ids: torch.Tensor  # (1, positions)
    source_ids: torch.Tensor
    target_id: int
    # The same sweep as a differs.py workload, where its plain-torch baselines and lower bound
    # apply (Llama-family models such as SmolLM2); None elsewhere.
    sweep: differs.Workload | None = None

    @property
    def layers(self) -> int:
        return len(self.blocks)

    @property
    def positions(self) -> int:
        return self.base_ids.shape[1]

    @property
    def cells(self) -> int:
        return self.layers * self.positions


def smollm2() -> Workload:
    model, tok = nv.models.load()
    sweep = differs.workloads(tok)["trace-10"]  # "The Space Needle ..." / "The Eiffel Tower ..."
    return _workload(
        "smollm2",
        model,
        tok,
        model.model.layers,
        base=sweep.base,
        source=sweep.source,
        target=sweep.metric[0],
        length=sweep.tokens,
        sweep=sweep,
    )


def gpt2() -> Workload:
    # Random weights, so p(" Paris") is about 1/vocabulary; the sweep costs the same.
    model, tok = nv.models.tiny("gpt2", layers=12)
    return _workload(
        "gpt2",
        model,
        tok,
        model.transformer.h,
        base="The Colosseum is located in the city of",
        source="The Eiffel Tower is located in the city of",
        target=" Paris",
    )


WORKLOADS: dict[str, Callable[[], Workload]] = {"smollm2": smollm2, "gpt2": gpt2}


def _workload(
    name, model, tok, blocks, *, base, source, target, length=None, sweep=None
) -> Workload:
    base_ids = tok(base, return_tensors="pt")["input_ids"]
    source_ids = tok(source, return_tensors="pt")["input_ids"]
    assert base_ids.shape == source_ids.shape, f"{name}: base and source differ in length"
    assert length is None or base_ids.shape[1] == length, f"{name}: not {length} tokens"
    target_ids = tok.encode(target, add_special_tokens=False)
    assert len(target_ids) == 1, f"{name}: {target!r} is not one token"
    return Workload(
        name, model, tok, blocks, base, source, target, base_ids, source_ids, target_ids[0], sweep
    )


# --- the methods: each returns p(target) as a (layers, positions) tensor -----------------------


def run_nbvene(w: Workload, max_batch: int) -> torch.Tensor:
    spec = "\n".join(
        [
            f'base: "{w.base}"',
            f'source: "{w.source}"',
            "restore: block_output layer=* pos=*",
            f'metric: p("{w.target}")',
        ]
    )
    # A `progress` callback of our own keeps nbvene's progress bar out of the timing and output.
    res = nv.run(
        spec, model=w.model, tokenizer=w.tokenizer, max_batch=max_batch, progress=_no_progress
    )
    return res.values


def _no_progress(done: int, total: int) -> None:
    pass


def run_pyvene_loop(w: Workload, max_batch: int) -> torch.Tensor:
    """As pyvene's causal-tracing tutorial does it: a new IntervenableModel per layer and one
    call per cell, the source run again each time, logits at every position."""
    pv = pyvene()
    base, source = {"input_ids": w.base_ids}, {"input_ids": w.source_ids}
    p = torch.empty(w.layers, w.positions)
    with quiet():
        for layer in range(w.layers):
            model = pv.IntervenableModel(_restore_config(pv, [layer]), w.model)
            for pos in range(w.positions):
                _, patched = model(base, [source], unit_locations={"sources->base": pos})
                p[layer, pos] = patched.logits[0, -1].softmax(-1)[w.target_id]
    return p


def run_pyvene_per_layer(w: Workload, max_batch: int) -> torch.Tensor:
    """pyvene by hand with its stock intervention: the clean run once, passed in as
    `source_representations`; one call per layer, that layer's cells as rows with per-row
    positions; logits at the last position only (`logits_to_keep` goes through to the model)."""
    pv = pyvene()
    clean = block_outputs(w, w.source_ids)
    p = torch.empty(w.layers, w.positions)
    with quiet():
        for layer in range(w.layers):
            # One model per layer anyway; also, a reused model can apply per-row positions as
            # the first row's after a call with integer locations (models.md, pyvene 0.1.8).
            model = pv.IntervenableModel(_restore_config(pv, [layer]), w.model)
            for positions in _chunks(range(w.positions), max_batch):
                base = {"input_ids": w.base_ids.expand(len(positions), -1), "logits_to_keep": 1}
                _, patched = model(
                    base,
                    unit_locations={"base": [[[pos] for pos in positions]]},
                    source_representations=clean[layer, positions, None],
                )
                p[layer, positions] = patched.logits[:, -1].softmax(-1)[:, w.target_id]
    return p


def run_pyvene_packed(w: Workload, max_batch: int) -> torch.Tensor:
    """The best pyvene by hand that we found: one model with an intervention at every layer,
    `max_batch` cells of any layers a call. Each intervention sees every row, so rows of other
    layers get a NaN source, which a three-line custom intervention reads as "keep the base"
    (stock per-row subspace masks go wrong when the first row's is empty, models.md)."""
    pv = pyvene()
    clean = block_outputs(w, w.source_ids)
    model = pv.IntervenableModel(
        _restore_config(pv, range(w.layers), _keep_base_where_nan(pv)), w.model
    )
    layer_of, pos_of = _cell_indices(w)
    p = torch.empty(w.cells)
    with quiet():
        for rows in _chunks(range(w.cells), max_batch):
            layer, pos, row = layer_of[rows], pos_of[rows], torch.arange(len(rows))
            shape = (w.layers, len(rows), 1, clean.shape[-1])
            sources = torch.full(shape, float("nan"), dtype=clean.dtype, device=clean.device)
            sources[layer, row, 0] = clean[layer, pos]
            cells = list(zip(layer.tolist(), pos.tolist(), strict=True))
            locations = [[[q if k == at else 0] for k, q in cells] for at in range(w.layers)]
            base = {"input_ids": w.base_ids.expand(len(rows), -1), "logits_to_keep": 1}
            _, patched = model(
                base, unit_locations={"base": locations}, source_representations=list(sources)
            )
            p[rows] = patched.logits[:, -1].float().softmax(-1)[:, w.target_id].cpu()
    return p.view(w.layers, w.positions)


def run_hooks(w: Workload, rows_per_pass: int) -> torch.Tensor:
    """No library: the clean run once, then the base repeated once per cell, `rows_per_pass`
    rows a forward pass, each decoder layer's forward hook writing its own rows' clean vectors
    in place; logits at the last position only."""
    clean = block_outputs(w, w.source_ids)
    layer_of, pos_of = _cell_indices(w)
    p = torch.empty(w.cells)
    for rows in _chunks(range(w.cells), rows_per_pass):
        with restoring(w.blocks, clean, layer_of[rows], pos_of[rows]):
            ids = w.base_ids.expand(len(rows), -1)
            logits = w.model(input_ids=ids, logits_to_keep=1, use_cache=False).logits
        p[rows] = logits[:, -1].float().softmax(-1)[:, w.target_id].cpu()  # any device
    return p.view(w.layers, w.positions)


def run_plain_layer(w: Workload, max_batch: int) -> torch.Tensor:
    """differs.py's plain torch: 64 rows a pass, each chunk from its lowest patched layer, from
    the base run's block input there."""
    return differs.run_plain(w.model, w.tokenizer, w.sweep, suffix=False).view(w.layers, -1)


def run_plain_prefix(w: Workload, max_batch: int) -> torch.Tensor:
    """The same, each chunk running positions p.. only (p: its rows' first patched position) on
    the base run's keys and values for the positions before p."""
    return differs.run_plain(w.model, w.tokenizer, w.sweep, suffix=True).view(w.layers, -1)


@dataclass(frozen=True)
class Method:
    name: str
    what: str
    run: Callable[[Workload, int], torch.Tensor]  # (workload, max_batch) -> p
    slow: bool = False
    needs_sweep: bool = False  # runs only where the workload has a differs.py sweep


METHODS = {
    m.name: m
    for m in [
        Method("nbvene", "nv.run(spec, max_batch=N)", run_nbvene),
        Method(
            "pyvene-loop",
            "pyvene as its tutorial: new model per layer, 1 call per cell",
            run_pyvene_loop,
            slow=True,
        ),
        Method(
            "pyvene-per-layer",
            "pyvene: clean run once, 1 call per layer, per-row positions",
            run_pyvene_per_layer,
        ),
        Method(
            "pyvene-packed",
            "pyvene: clean run once, N cells of any layer per call",
            run_pyvene_packed,
        ),
        Method("hooks", "plain torch hooks, N cells per pass", run_hooks),
        Method(
            "hooks-one-pass",
            "plain torch hooks, all cells in one pass",
            lambda w, max_batch: run_hooks(w, w.cells),
        ),
        Method(
            "plain-layer",
            "plain torch, start at the patched layer (64 rows a pass)",
            run_plain_layer,
            needs_sweep=True,
        ),
        Method(
            "plain-prefix",
            "plain torch, start at the patched layer + the base run's keys/values before the patch",
            run_plain_prefix,
            needs_sweep=True,
        ),
    ]
}
REFERENCE = "nbvene"  # every method is checked against it
BASELINE = "pyvene-loop"  # speed-ups are over it
NOTES = """\
loop s / s: the documented pyvene loop's median time over this method's (a speed-up).
s / nbvene s: this method's median time over nbvene's (above 1: slower than nbvene).
best s: the fastest run, the least disturbed by other processes on a busy machine.
A time runs from token ids (nbvene: the spec's text) to the (layers, positions) tensor, the
clean run included; the model is loaded and has run one forward before.
lower bound: the floating-point work of the positions and layers that differ from the base run
(and the base and source runs), in forwards of the prompt, timed at the rate of one 64-row
batched forward (differs.py); measured after the methods' rounds.
differs.py's and steering.py's tables: nbvene / method is nbvene's median time over the
method's (above 1: nbvene is slower), their methods interleaved as here."""
MEMORY_NOTE = """\
peak MiB: the resident-set high-water mark (VmHWM, reset before each run) minus the resident
size at the run's start, after free heap pages went back to the OS; the largest over the runs.
What the method allocates on top of the loaded model (activations, logits, copies)."""


# --- shared pieces ---------------------------------------------------------------------------


def block_outputs(w: Workload, ids: torch.Tensor) -> torch.Tensor:
    """Every decoder layer's output for one prompt: (layers, positions, hidden)."""
    kept: list[torch.Tensor] = []

    def keep(module, args, output):
        kept.append((output[0] if isinstance(output, tuple) else output)[0].clone())

    handles = [block.register_forward_hook(keep) for block in w.blocks]
    try:
        w.model(input_ids=ids, logits_to_keep=1, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(kept)


@contextlib.contextmanager
def restoring(
    blocks: Sequence[nn.Module], clean: torch.Tensor, layer_of: torch.Tensor, pos_of: torch.Tensor
) -> Iterator[None]:
    """Row r of the batch gets clean[layer_of[r], pos_of[r]] at the output of that layer."""
    handles = []

    def hook(rows, positions, vectors):
        def restore(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            hidden[rows, positions] = vectors

        return restore

    try:
        for layer, block in enumerate(blocks):
            rows = (layer_of == layer).nonzero().squeeze(1)
            if len(rows):
                positions = pos_of[rows]
                restore = hook(rows, positions, clean[layer, positions])
                handles.append(block.register_forward_hook(restore))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _cell_indices(w: Workload) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer and position of each cell, layer-major (row = layer * positions + pos)."""
    cells = torch.tensor(list(itertools.product(range(w.layers), range(w.positions))))
    return cells[:, 0], cells[:, 1]


def _chunks(items: range, size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@functools.cache
def pyvene():
    with quiet():  # it prints "nnsight is not detected" and warns on import
        import pyvene as pv
    return pv


def _restore_config(pv, layers, intervention=None):
    return pv.IntervenableConfig(
        representations=[pv.RepresentationConfig(layer, "block_output") for layer in layers],
        intervention_types=intervention or pv.VanillaIntervention,
    )


@functools.cache
def _keep_base_where_nan(pv):
    class KeepBaseWhereNan(pv.VanillaIntervention):
        def forward(self, base, source, subspaces=None, **kwargs):
            return torch.where(source.isnan(), base, source)

    return KeepBaseWhereNan


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        yield


# --- measuring -------------------------------------------------------------------------------


class PeakMemory:
    """Peak resident memory of one call, above the process's resident size just before it.

    Linux only: free heap pages go back to the OS first (glibc `malloc_trim`), so memory
    that earlier methods freed is not silently reused, then the kernel's high-water mark is
    reset (`/proc/self/clear_refs`) and read after the call (VmHWM). Elsewhere: None.
    """

    def __init__(self):
        self.available = False
        try:
            self._libc = ctypes.CDLL("libc.so.6")
            self._reset()
            self.available = True
        except (OSError, AttributeError):
            pass

    def measure(self, fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float | None]:
        if not self.available:
            return fn(), None
        self._reset()
        before = self._status("VmRSS")
        values = fn()
        return values, (self._status("VmHWM") - before) / 1024

    def _reset(self) -> None:
        gc.collect()
        self._libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1))


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    peak_mib: list[float] = field(default_factory=list)
    values: torch.Tensor | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def measure(
    w: Workload, methods: list[Method], repeats: int, max_batch: int, memory: PeakMemory
) -> dict[str, Timing]:
    """Each method `repeats` times, round-robin so that a noisy neighbour hits all alike."""
    timings = {m.name: Timing() for m in methods}
    # pyvene switches off `requires_grad` on every parameter and never restores it, which sends
    # a plain hook's LM head down a slower path: every method starts from the model's own flags
    # (and gets them back at the end, for the workloads after this one on the same model)
    flags = {p: p.requires_grad for p in w.model.parameters()}
    try:
        for _ in range(repeats):
            for m in methods:
                for p, flag in flags.items():
                    p.requires_grad_(flag)

                def call(m=m):
                    start = time.perf_counter()
                    with torch.no_grad():
                        values = m.run(w, max_batch)
                    return values, time.perf_counter() - start

                (values, seconds), peak = memory.measure(call)
                t = timings[m.name]
                t.seconds.append(seconds)
                if peak is not None:
                    t.peak_mib.append(peak)
                t.values = values.detach().float().cpu()
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return timings


@dataclass(frozen=True)
class LowerBound:
    forwards: float  # the work that differs, in forwards of the prompt
    forward_s: float  # one forward's seconds at a 64-row pass's rate (median of 3 passes)

    @property
    def seconds(self) -> float:
        return self.forwards * self.forward_s


def lower_bound(w: Workload) -> LowerBound | None:
    """differs.py's lower bound of the workload's sweep; None where it has none."""
    if w.sweep is None:
        return None
    with torch.no_grad():
        return LowerBound(
            differs.lower_bound_units(w.model, w.tokenizer, w.sweep),
            statistics.median(differs.forward_seconds(w.model, w.tokenizer, w.sweep, runs=3)),
        )


def max_diff(values: torch.Tensor, reference: torch.Tensor) -> float:
    if values.shape != reference.shape:
        return float("inf")
    diff = (values - reference).abs().max().item()
    return diff if diff == diff else float("inf")  # NaN counts as a failure


# --- the report ------------------------------------------------------------------------------


def report(
    w: Workload, timings: dict[str, Timing], methods: list[Method], bound: LowerBound | None
) -> list[str]:
    """Print the table (and the lower bound's line); return the methods whose numbers disagree
    with nbvene's."""
    reference = timings[REFERENCE]
    p = reference.values
    top = divmod(int(p.argmax()), w.positions)
    print(
        f"\n## {w.name}: {type(w.model).__name__}, {w.layers} layers x {w.positions} positions"
        f" = {w.cells} cells, restore block_output, p({w.target!r}) at the last position"
    )
    print(f"base:   {w.base!r}\nsource: {w.source!r}")
    print(f"nbvene: p ranges {p.min():.4g}..{p.max():.4g}, largest at (layer, pos) = {top}\n")
    rows = [
        (
            "method",
            "median s",
            "best s",
            "runs s",
            "loop s / s",
            "s / nbvene s",
            "max |diff| vs nbvene",
            "peak MiB",
            "what",
        )
    ]
    failed = []
    baseline = timings.get(BASELINE)
    for m in methods:
        t = timings[m.name]
        diff = max_diff(t.values, p)
        if diff > TOLERANCE:
            failed.append(m.name)
        runs = " ".join(f"{s:.2f}" for s in t.seconds)
        rows.append(
            (
                m.name,
                f"{t.median:.3f}",
                f"{min(t.seconds):.3f}",
                runs,
                f"{baseline.median / t.median:.1f}x" if baseline else "n/a",
                f"{t.median / reference.median:.2f}x",
                f"{diff:.1e}" + ("  FAIL" if diff > TOLERANCE else ""),
                f"{max(t.peak_mib):.0f}" if t.peak_mib else "n/a",
                m.what,
            )
        )
    if bound is not None:
        rows.append(
            (
                "lower bound",
                f"{bound.seconds:.3f}",
                "",
                "",
                f"{baseline.median / bound.seconds:.1f}x" if baseline else "n/a",
                f"{bound.seconds / reference.median:.2f}x",
                "",
                "",
                f"what differs: {bound.forwards:.2f} forwards x {bound.forward_s * 1e3:.2f} ms",
            )
        )
    _table(rows)
    if bound is not None:
        print(f"\nnbvene s / lower bound s: {reference.median / bound.seconds:.2f}x")
    return failed


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        cells = [
            c.ljust(n) if i in (0, 3, 8) else c.rjust(n)
            for i, (c, n) in enumerate(zip(row, widths, strict=True))
        ]
        print("| " + " | ".join(cells) + " |")
        if k == 0:
            print("|" + "|".join("-" * (n + 2) for n in widths) + "|")


def print_machine(args: argparse.Namespace) -> None:
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"cpus: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    print(f"load average at start (1, 5, 15 min): {load_average()}")
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, pyvene {metadata.version('pyvene')}, "
        f"nbvene {nv.__version__}"
    )
    print(f"workloads: {', '.join(args.workloads)}")
    print(f"repeats: {args.repeats} (medians, interleaved), max_batch: {args.max_batch}")


# `all`: the causal-tracing workloads; `every`: those, differs.py's and steering.py's.
EVERY = [*WORKLOADS, *differs.NAMES, "steering"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workload",
        default="all",
        help=f"all ({', '.join(WORKLOADS)}), every, or comma-separated from: {', '.join(EVERY)}"
        " (differs.py's and steering.py's run their own methods, 64 rows a pass)",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, from: {', '.join(METHODS)} (nbvene always runs: the reference)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=64, help="cells per forward pass")
    parser.add_argument("--skip-slow", action="store_true", help="skip the pyvene-loop method")
    args = parser.parse_args(argv)
    groups = {"all": list(WORKLOADS), "every": EVERY}
    args.workloads = groups.get(args.workload) or args.workload.split(",")
    unknown = [n for n in args.workloads if n not in EVERY]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: all, every, {', '.join(EVERY)}")
    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    names = [REFERENCE, *(n for n in names if n != REFERENCE)]
    args.methods = [METHODS[n] for n in names if not (args.skip_slow and METHODS[n].slow)]
    return args


def trace(name: str, args: argparse.Namespace, memory: PeakMemory) -> list[str]:
    """Time and report one causal-tracing workload; the methods that disagree with nbvene."""
    w = WORKLOADS[name]()
    methods = [m for m in args.methods if w.sweep is not None or not m.needs_sweep]
    skipped = [m.name for m in args.methods if m not in methods]
    with torch.no_grad():  # a first forward pays one-off costs before any method is timed
        w.model(input_ids=w.base_ids, use_cache=False)
    timings = measure(w, methods, args.repeats, args.max_batch, memory)
    failed = report(w, timings, methods, lower_bound(w))
    if skipped:
        print(f"not run on {name} (Llama-family code): {', '.join(skipped)}")
    print(f"load average after: {load_average()}")
    return [f"{name}/{m}" for m in failed]


def delegated(name: str, args: argparse.Namespace) -> list[str]:
    """Run a differs.py workload or steering.py's workloads on SmolLM2, with their own methods
    and tables; [name] where a method disagreed with nbvene."""
    model, tok = nv.models.load()
    if name == "steering":
        ok = steering.run(model, tok, list(steering.WORKLOADS), args.repeats)
    else:
        ok = differs.run(model, tok, [name], args.repeats, list(differs.METHODS))
    return [] if ok else [name]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pyvene()
    print_machine(args)
    memory = PeakMemory()
    failed = []
    for name in args.workloads:
        failed += trace(name, args, memory) if name in WORKLOADS else delegated(name, args)

    print(f"\nload average at end (1, 5, 15 min): {load_average()}")
    print(NOTES)
    if memory.available:
        print(MEMORY_NOTE)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"process max RSS over the whole benchmark (ru_maxrss): {maxrss / 1024:.0f} MiB")
    if failed:
        print(f"\nFAIL: max |diff| above {TOLERANCE:g} for {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"\nall methods agree with nbvene within {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
