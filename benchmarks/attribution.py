"""Attribution patching against the exact sweep on SmolLM2-135M: time, and how well the
estimate ranks the cells (Spearman rank correlation with the exact values).

    .venv/bin/python benchmarks/attribution.py [--repeats 3]

The sweep: `patch: block_output layer=* pos=*` (30 layers × 10 positions), base "The Space
Needle …", source "The Eiffel Tower …", metric logit_diff(" Paris", " Seattle").
"""

from __future__ import annotations

import argparse
import time

import torch

import nbvene as nv

SPEC = """
base:   "The Space Needle is located in the city of"
source: "The Eiffel Tower is located in the city of"
patch:  block_output layer=* pos=*
metric: logit_diff(" Paris", " Seattle")
"""


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation (ties ranked by order, as argsort does)."""

    def ranks(x):
        return x.flatten().argsort().argsort().double()

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def quiet(done: int, total: int) -> None:
    """No progress bar."""


def timed(spec: str, model, tok, repeats: int):
    nv.run(spec, model=model, tokenizer=tok, progress=quiet)  # warm-up
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = nv.run(spec, model=model, tokenizer=tok, progress=quiet)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, tok = nv.models.load()
    exact_s, exact = timed(SPEC, model, tok, args.repeats)
    attr_s, attr = timed(SPEC + "estimate: attribution\n", model, tok, args.repeats)
    cells = exact.values.numel()
    rho = spearman(exact.values, attr.values)
    last = (exact.values[:, -1], attr.values[:, -1])
    print(
        f"model: SmolLM2-135M  device: {exact.meta['device']}  threads: {torch.get_num_threads()}"
    )
    print(f"sweep: layer × pos = {tuple(exact.values.shape)} ({cells} cells)")
    print(f"clean {float(exact.clean):.3f}  corrupted {float(exact.corrupted):.3f}")
    print(f"{'method':<14}{'best of ' + str(args.repeats):>12}")
    print(f"{'exact':<14}{exact_s:>11.3f}s")
    print(f"{'attribution':<14}{attr_s:>11.3f}s   ({exact_s / attr_s:.1f}× faster)")
    print(f"Spearman rank correlation, all cells:       {rho:.3f}")
    print(f"Spearman rank correlation, last position:   {spearman(*last):.3f}")
    top = exact.values.flatten().topk(10).indices
    hit = len(set(top.tolist()) & set(attr.values.flatten().topk(10).indices.tolist()))
    print(f"top-10 cells shared:                        {hit}/10")


if __name__ == "__main__":
    main()
