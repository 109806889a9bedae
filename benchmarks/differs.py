"""Compute only what differs: nbvene's sweeps against the most competent plain-torch code, and
against the lower bound, in one process, interleaved, on SmolLM2-135M (issue 18).

Each workload is one nbvene spec and the same rows written by hand:

* plain-layer: each chunk of 64 rows starts at its lowest row's patched layer, from the base
  run's block input there, forward hooks writing each row's source vector in place;
* plain-prefix: the same, and a chunk runs positions p.. only (p: its rows' first patched
  position), attending to the base run's keys and values for the positions before p;
* lower bound: the floating-point work of the positions and layers that differ from the base
  run, in single-forward units (one forward of the prompt = 1), plus the base and source runs,
  timed at the rate of a 64-row batched forward, one such forward timed in every round
  (interleaved with the methods; its median, as for the methods).

Every method's numbers are checked against nbvene's (exit status 1 beyond 1e-4). Each method
starts from the model's own `requires_grad` flags (restored before every call).

    .venv/bin/python benchmarks/differs.py                  # every workload, ~10 min busy
    .venv/bin/python benchmarks/differs.py --workload head-z --nbvene-only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from machine import load_average, print_header

import nbvene as nv
from nbvene.engine import prefix

TOLERANCE = 1e-4
ROWS_PER_PASS = 64

SHORT_BASE = "The Space Needle is located in the city of"  # 10 tokens
SHORT_SOURCE = "The Eiffel Tower is located in the city of"
HEAD_BASE = "The Colosseum is located in the old city of Rome. It"  # 14 tokens
HEAD_SOURCE = "The Eiffel Tower is located in the old city of Paris. It"
STORY = (
    "Alice went to the market in the morning and bought apples, bread and cheese for the"
    " picnic. She met her friend Bob near the fountain, and they walked together along the"
    " river until they found a quiet spot under an old oak tree. "
)


@dataclass(frozen=True)
class Workload:
    name: str
    site: str  # "block_output" or "z"
    base: str
    source: str
    layers: str  # the spec's layer= value
    positions: str  # the spec's pos= value
    metric: tuple[str, str | None]  # p(target) or logit_diff(a, b)
    tokens: int  # the prompts' length, asserted


NAMES = ("last-pos", "trace-10", "layers-10-29", "head-z", "long-200", "trace-50")  # slow last


def _story(tok, tokens: int) -> str:
    """The story's first `tokens` tokens and a full stop, as text: a long prompt's start."""
    return tok.decode(tok(STORY * 20)["input_ids"][:tokens]) + "."


def workloads(tok) -> dict[str, Workload]:
    """The workloads by name, in the order of `NAMES`, each prompt checked for its length."""
    fifty = _story(tok, 39)  # 40 tokens, and the 10 of " The Space Needle is located ..."
    story = _story(tok, 189)
    paris = (" Paris", None)
    every = [
        Workload("last-pos", "block_output", SHORT_BASE, SHORT_SOURCE, "*", "-1", paris, 10),
        Workload("trace-10", "block_output", SHORT_BASE, SHORT_SOURCE, "*", "*", paris, 10),
        Workload(
            "layers-10-29", "block_output", SHORT_BASE, SHORT_SOURCE, "10..29", "*", paris, 10
        ),
        Workload("head-z", "z", HEAD_BASE, HEAD_SOURCE, "*", "-1", (" is", " was"), 14),
        Workload(
            "long-200",
            "block_output",
            f"{story} {SHORT_BASE}",
            f"{story} {SHORT_SOURCE}",
            "*",
            "-1",
            paris,
            200,
        ),
        Workload(
            "trace-50",
            "block_output",
            f"{fifty} {SHORT_BASE}",
            f"{fifty} {SHORT_SOURCE}",
            "*",
            "*",
            paris,
            50,
        ),
    ]
    for w in every:
        lengths = {len(tok(prompt)["input_ids"]) for prompt in (w.base, w.source)}
        assert lengths == {w.tokens}, f"{w.name}: {lengths} tokens, not {w.tokens}"
    assert tuple(w.name for w in every) == NAMES
    return {w.name: w for w in every}


def spec(w: Workload) -> str:
    target, other = w.metric
    metric = f'p("{target}")' if other is None else f'logit_diff("{target}", "{other}")'
    verb = "restore" if w.site == "block_output" else "patch"
    head = " head=*" if w.site == "z" else ""
    return "\n".join(
        [
            f'base: "{w.base}"',
            f'source: "{w.source}"',
            f"{verb}: {w.site} layer={w.layers}{head} pos={w.positions}",
            f"metric: {metric}",
        ]
    )


# --- nbvene ----------------------------------------------------------------------------------


def run_nbvene(model, tok, w: Workload) -> torch.Tensor:
    res = nv.run(spec(w), model=model, tokenizer=tok, progress=lambda done, total: None)
    return res.values.flatten()


def run_nbvene_full_width(model, tok, w: Workload) -> torch.Tensor:
    """nbvene with suffix-only rows switched off: rows start at their layer, every position."""
    supports = prefix.supports
    prefix.supports = lambda model: False
    try:
        return run_nbvene(model, tok, w)
    finally:
        prefix.supports = supports


# --- plain torch -----------------------------------------------------------------------------


class Prefix:
    """A stand-in cache: the base run's keys and values before the suffix, then the suffix's."""

    def __init__(self, before: dict[int, tuple[torch.Tensor, torch.Tensor]]):
        self.before = before

    def update(self, keys, values, layer_idx, cache_kwargs=None):
        k, v = self.before[layer_idx]
        return torch.cat([k, keys], dim=-2), torch.cat([v, values], dim=-2)


def rows_of(model, tok, w: Workload) -> list[tuple[int, int, int | None]]:
    """(layer, position, head) per row, in nbvene's row order (layer, head, position)."""
    n_layers = model.config.num_hidden_layers
    width = len(tok(w.base)["input_ids"])
    if w.layers == "*":
        layers = range(n_layers)
    else:
        first, last = (int(x) for x in w.layers.split(".."))
        layers = range(first, last + 1)
    positions = range(width) if w.positions == "*" else [width - 1]
    heads = range(model.config.num_attention_heads) if w.site == "z" else [None]
    return [(layer, p, h) for layer in layers for h in heads for p in positions]


def run_plain(model, tok, w: Workload, *, suffix: bool) -> torch.Tensor:
    blocks = model.model.layers
    base = tok(w.base, return_tensors="pt")["input_ids"]
    source = tok(w.source, return_tensors="pt")["input_ids"]
    width = base.shape[1]
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    rows = rows_of(model, tok, w)

    def run_keeping(ids, cache: bool):
        inputs, outputs = {}, {}
        handles = []
        for layer, block in enumerate(blocks):
            handles.append(
                block.register_forward_pre_hook(
                    lambda m, a, k, layer=layer: inputs.__setitem__(
                        layer, k.get("hidden_states", a[0] if a else None)
                    ),
                    with_kwargs=True,
                )
            )
            if w.site == "z":
                handles.append(
                    block.self_attn.o_proj.register_forward_pre_hook(
                        lambda m, a, layer=layer: outputs.__setitem__(layer, a[0][0])
                    )
                )
            else:
                handles.append(
                    block.register_forward_hook(
                        lambda m, a, o, layer=layer: outputs.__setitem__(
                            layer, (o[0] if isinstance(o, tuple) else o)[0]
                        )
                    )
                )
        try:
            out = model(input_ids=ids, use_cache=cache, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
        return out, inputs, outputs

    _, _, clean = run_keeping(source, cache=False)
    out, hidden, _ = run_keeping(base, cache=True)
    kv = {i: (layer.keys, layer.values) for i, layer in enumerate(out.past_key_values.layers)}
    position_ids = torch.arange(width)[None]
    cos, sin = model.model.rotary_emb(hidden[0], position_ids)
    target = tok.encode(w.metric[0], add_special_tokens=False)[0]
    other = tok.encode(w.metric[1], add_special_tokens=False)[0] if w.metric[1] else None

    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1]))
    values = torch.empty(len(rows))
    for at in range(0, len(order), ROWS_PER_PASS):
        chunk = order[at : at + ROWS_PER_PASS]
        n = len(chunk)
        start = min(rows[i][0] for i in chunk)
        since = min(rows[i][1] for i in chunk) if suffix else 0
        handles = []
        for layer in range(start, len(blocks)):
            mine = [
                (k, rows[i][1] - since, rows[i][1], rows[i][2])
                for k, i in enumerate(chunk)
                if rows[i][0] == layer
            ]
            if not mine:
                continue
            r = torch.tensor([m[0] for m in mine])
            p = torch.tensor([m[1] for m in mine])
            src = clean[layer][torch.tensor([m[2] for m in mine])]
            if w.site == "z":
                cols = torch.tensor([m[3] for m in mine])[:, None] * head_dim + torch.arange(
                    head_dim
                )
                src = src.gather(1, cols)

                def patch_z(m, a, r=r, p=p, cols=cols, src=src):
                    x = a[0].clone()
                    x[r[:, None], p[:, None], cols] = src
                    return (x,)

                handles.append(blocks[layer].self_attn.o_proj.register_forward_pre_hook(patch_z))
            else:

                def patch_block(m, a, o, r=r, p=p, src=src):
                    (o[0] if isinstance(o, tuple) else o)[r, p] = src

                handles.append(blocks[layer].register_forward_hook(patch_block))
        try:
            x = hidden[start][:, since:].expand(n, -1, -1)
            cache = None
            mask = None
            if since:
                cache = Prefix(
                    {
                        layer: (
                            k[:, :, :since].expand(n, -1, -1, -1),
                            v[:, :, :since].expand(n, -1, -1, -1),
                        )
                        for layer, (k, v) in kv.items()
                    }
                )
                queries = torch.arange(since, width)[:, None]
                mask = (torch.arange(width)[None] <= queries)[None, None]
            rotary = (cos[:, since:], sin[:, since:])
            for layer in range(start, len(blocks)):
                out = blocks[layer](
                    x,
                    attention_mask=mask,
                    position_ids=position_ids[:, since:],
                    past_key_values=cache,
                    position_embeddings=rotary,
                )
                x = out[0] if isinstance(out, tuple) else out
        finally:
            for handle in handles:
                handle.remove()
        logits = model.lm_head(model.model.norm(x[:, -1]))
        if other is None:
            metric = logits.softmax(-1)[:, target]
        else:
            metric = logits[:, target] - logits[:, other]
        values[torch.tensor(chunk)] = metric
    return values


def lower_bound_units(model, tok, w: Workload) -> float:
    """The work that differs, in forwards of the prompt (its blocks at every position, the LM
    head at the last): the source and base runs, then per row the positions from its patch on
    through the layers its patch changes (a block output changes the layers above it; a head's
    z its own layer's output projection and on), and the LM head at its read position. Work is
    counted in weights used per token (attention scores, a few percent here, are left out)."""
    n_layers = model.config.num_hidden_layers
    width = len(tok(w.base)["input_ids"])
    block = sum(p.numel() for p in model.model.layers[0].parameters() if p.dim() == 2)
    head = model.lm_head.weight.numel()
    forward = n_layers * width * block + head
    work = 2.0 * forward
    for layer, p, _ in rows_of(model, tok, w):
        above = n_layers - layer - (1 if w.site == "block_output" else 0)
        work += above * (width - p) * block + head
    return work / forward


def forward_seconds(model, tok, w: Workload, runs: int = 3) -> list[float]:
    """One forward of the prompt at the throughput of a batched pass (64 rows at once): the
    time of each of `runs` such passes, divided by 64."""
    ids = tok(w.base, return_tensors="pt")["input_ids"].expand(ROWS_PER_PASS, -1)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(input_ids=ids, use_cache=False, logits_to_keep=1)
        times.append((time.perf_counter() - start) / ROWS_PER_PASS)
    return times


# --- timing ----------------------------------------------------------------------------------

METHODS: dict[str, Callable] = {
    "nbvene": run_nbvene,
    "nbvene-full-width": run_nbvene_full_width,
    "plain-layer": lambda m, t, w: run_plain(m, t, w, suffix=False),
    "plain-prefix": lambda m, t, w: run_plain(m, t, w, suffix=True),
}


def bench(model, tok, w: Workload, repeats: int, methods: list[str]) -> bool:
    flags = {p: p.requires_grad for p in model.parameters()}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    values: dict[str, torch.Tensor] = {}
    forward: list[float] = []  # the bound's unit, timed in every round like the methods
    for _ in range(repeats):
        for m in methods:
            for p, flag in flags.items():
                p.requires_grad_(flag)
            start = time.perf_counter()
            with torch.no_grad():
                values[m] = METHODS[m](model, tok, w).float()
            seconds[m].append(time.perf_counter() - start)
        with torch.no_grad():
            forward += forward_seconds(model, tok, w, runs=1)
    with torch.no_grad():
        units = lower_bound_units(model, tok, w)
    bound = units * statistics.median(forward)
    width = len(tok(w.base)["input_ids"])
    rows = len(values["nbvene"])
    print(f"\n## {w.name}: {spec(w).splitlines()[2]}, {width} tokens, {rows} rows")
    print(f"load average after: {load_average()}")
    ok = True
    ours = statistics.median(seconds["nbvene"])
    print("| method | median s | runs s | nbvene / method | max abs diff |")
    print("|---|---|---|---|---|")
    for m in methods:
        diff = (values[m] - values["nbvene"]).abs().max().item()
        ok &= diff <= TOLERANCE
        median = statistics.median(seconds[m])
        runs = " ".join(f"{s:.2f}" for s in seconds[m])
        flag = "" if diff <= TOLERANCE else "  FAIL"
        print(f"| {m} | {median:.3f} | {runs} | {ours / median:.2f}x | {diff:.1e}{flag} |")
    runs = " ".join(f"{units * f:.2f}" for f in forward)
    print(f"| lower bound ({units:.2f} forwards) | {bound:.3f} | {runs} | {ours / bound:.2f}x | |")
    return ok


def run(model, tok, names: list[str], repeats: int, methods: list[str]) -> bool:
    """Bench the named workloads one after the other; whether every method agreed."""
    every = workloads(tok)
    with torch.no_grad():  # a first forward pays one-off costs before any method is timed
        model(input_ids=tok(SHORT_BASE, return_tensors="pt")["input_ids"], use_cache=False)
    return all([bench(model, tok, every[name], repeats, methods) for name in names])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="all", help=f"all, or from: {', '.join(NAMES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--nbvene-only", action="store_true")
    parser.add_argument(
        "--methods", help=f"a comma-separated subset of {', '.join(METHODS)} (nbvene always runs)"
    )
    args = parser.parse_args(argv)
    names = list(NAMES) if args.workload == "all" else args.workload.split(",")
    unknown = [name for name in names if name not in NAMES]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(NAMES)}")
    torch.set_num_threads(args.threads)
    model, tok = nv.models.load()
    print_header()
    print(f"repeats: {args.repeats}, interleaved; ratio above 1: nbvene is slower")
    methods = ["nbvene", "nbvene-full-width"] if args.nbvene_only else list(METHODS)
    if args.methods:
        chosen = args.methods.split(",")
        if any(m not in METHODS for m in chosen):
            parser.error(f"unknown methods in {args.methods!r}; known: {', '.join(METHODS)}")
        methods = ["nbvene", *(m for m in chosen if m != "nbvene")]
    ok = run(model, tok, names, args.repeats, methods)
    print(f"\nload average at end: {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
