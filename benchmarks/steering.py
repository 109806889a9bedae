"""Steering generation: `nv.generate` against a plain forward-hook implementation of the same
rows, in one process, interleaved, on SmolLM2-135M (issue 18, item 5).

Both decode the same rows together in one batch, greedily, with the KV cache: step 0 runs the
prompt, each later step the last token alone, the LM head at the last position only, a forward
hook on block `layer` adding each row's strength × vector to the block's output. A row stops
at the end-of-text token, and the loop when every row has stopped. Workloads:

* pair: the baseline and one steered row (what `nv.generate` decodes by default);
* steered-only: the steered row alone (`nv.generate(..., baseline=False)`);
* sweep: the baseline and five strengths (`* 0..8 step 2`).

The generated ids must be equal and the first next-token logits within 1e-4 (exit status 1
otherwise). Each method starts from the model's own `requires_grad` flags.

    .venv/bin/python benchmarks/steering.py                      # every workload, ~2 min busy
    .venv/bin/python benchmarks/steering.py --workload pair --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import transformers
from machine import load_average, print_header

import nbvene as nv

TOLERANCE = 1e-4
LAYER = 12
PROMPT = "I think that you are"
NEW_TOKENS = 30


@dataclass(frozen=True)
class Workload:
    name: str
    strengths: str  # the spec's strength
    baseline: bool  # whether the baseline row is decoded too


WORKLOADS = {
    w.name: w
    for w in [
        Workload("pair", "4", True),
        Workload("steered-only", "4", False),
        Workload("sweep", "0..8 step 2", True),
    ]
}


def spec(w: Workload, new_tokens: int) -> str:
    return (
        f"steer:    block_output layer={LAYER} by {{v}} * {w.strengths}\n"
        f'generate: "{PROMPT}" max_new_tokens={new_tokens}\n'
    )


def strengths_of(w: Workload) -> list[float]:
    steered = [4.0] if w.strengths == "4" else [0.0, 2.0, 4.0, 6.0, 8.0]
    return ([0.0] if w.baseline else []) + steered


def run_nbvene(model, tok, w: Workload, vector, new_tokens):
    gen = nv.generate(
        spec(w, new_tokens),
        model=model,
        tokenizer=tok,
        namespace={"v": vector},
        baseline=w.baseline,
    )
    return gen.ids, gen.logits


def run_plain(model, tok, w: Workload, vector, new_tokens):
    """The same rows by hand: one forward hook, a DynamicCache, argmax, stop at end-of-text."""
    strengths = torch.tensor(strengths_of(w))
    added = strengths[:, None, None] * vector  # (rows, 1, hidden)

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + added, *output[1:])
        return output + added

    eos = tok.eos_token_id
    prompt = tok(PROMPT, return_tensors="pt")["input_ids"]
    ids = prompt.repeat(len(strengths), 1)
    out: list[list[int]] = [[] for _ in strengths]
    live = [True] * len(strengths)
    first = None
    cache = transformers.DynamicCache()
    handle = model.model.layers[LAYER].register_forward_hook(hook)
    try:
        for step in range(new_tokens):
            feed = ids if step == 0 else ids[:, -1:]
            output = model(input_ids=feed, past_key_values=cache, use_cache=True, logits_to_keep=1)
            logits = output.logits[:, -1].float()
            if step == 0:
                first = logits
            chosen = logits.argmax(-1)
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            for i, token in enumerate(chosen.tolist()):
                if live[i]:
                    out[i].append(token)
                    live[i] = token != eos
            if not any(live):
                break
    finally:
        handle.remove()
    return out, first


METHODS = {"nbvene": run_nbvene, "plain hooks": run_plain}


def bench(model, tok, w: Workload, vector, repeats: int, new_tokens: int) -> bool:
    flags = {p: p.requires_grad for p in model.parameters()}
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    made: dict[str, tuple] = {}
    for _ in range(repeats):
        for name, method in METHODS.items():
            for p, flag in flags.items():
                p.requires_grad_(flag)
            start = time.perf_counter()
            with torch.no_grad():
                made[name] = method(model, tok, w, vector, new_tokens)
            seconds[name].append(time.perf_counter() - start)
    ids, logits = made["nbvene"]
    rows = len(ids)
    print(f"\n## {w.name}: strengths {strengths_of(w)}, {rows} rows, {new_tokens} new tokens")
    print(f"load average after: {load_average()}")
    ours = statistics.median(seconds["nbvene"])
    print("| method | median s | runs s | nbvene / method | same ids | max abs diff |")
    print("|---|---|---|---|---|---|")
    ok = True
    for name in METHODS:
        other_ids, other_logits = made[name]
        diff = (other_logits - logits).abs().max().item()
        same = other_ids == ids
        ok &= same and diff <= TOLERANCE
        median = statistics.median(seconds[name])
        runs = " ".join(f"{s:.2f}" for s in seconds[name])
        print(f"| {name} | {median:.3f} | {runs} | {ours / median:.3f}x | {same} | {diff:.1e} |")
    return ok


def run(model, tok, names: list[str], repeats: int, new_tokens: int = NEW_TOKENS) -> bool:
    """Bench the named workloads with one random steering vector; whether both methods agreed."""
    vector = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    vector = vector * 2.0
    with torch.no_grad():  # warm up both paths
        for method in METHODS.values():
            method(model, tok, WORKLOADS["pair"], vector, 2)
    return all([bench(model, tok, WORKLOADS[n], vector, repeats, new_tokens) for n in names])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="all", help=f"all, or from: {', '.join(WORKLOADS)}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    args = parser.parse_args(argv)
    names = list(WORKLOADS) if args.workload == "all" else args.workload.split(",")
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    torch.set_num_threads(args.threads)
    model, tok = nv.models.load()
    print_header()
    print(f"repeats: {args.repeats}, interleaved; ratio above 1: nbvene is slower")
    ok = run(model, tok, names, args.repeats, args.new_tokens)
    print(f"\nload average at end: {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
