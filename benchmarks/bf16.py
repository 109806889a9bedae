"""bf16 on the CPU: the causal trace of `causal_trace.py` (SmolLM2-135M, restore
`block_output layer=* pos=*`, 30 layers × 10 positions, p(" Paris")) with the model loaded by
`nv.models.load()` in float32 and by `nv.models.load(dtype=torch.bfloat16)`, in one process,
interleaved; prints the median times, their ratio, and the largest change of any cell's
probability (issue 18, item 7).

    .venv/bin/python benchmarks/bf16.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from machine import load_average, print_header

import nbvene as nv

SPEC = """\
base:    "The Space Needle is located in the city of"
source:  "The Eiffel Tower is located in the city of"
restore: block_output layer=* pos=*
metric:  p(" Paris")
"""


def trace(model, tok) -> torch.Tensor:
    return nv.run(SPEC, model=model, tokenizer=tok, progress=lambda done, total: None).values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {
        "float32": nv.models.load(),
        "bfloat16": nv.models.load(dtype=torch.bfloat16),
    }
    print_header()
    for model, tok in models.values():  # warm up
        trace(model, tok)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    values: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for name, (model, tok) in models.items():
            start = time.perf_counter()
            values[name] = trace(model, tok).float()
            seconds[name].append(time.perf_counter() - start)
    print(f"load average after: {load_average()}")
    print("| dtype | median s | runs s | float32 / dtype |")
    print("|---|---|---|---|")
    ours = statistics.median(seconds["float32"])
    for name, runs in seconds.items():
        median = statistics.median(runs)
        shown = " ".join(f"{s:.2f}" for s in runs)
        print(f"| {name} | {median:.3f} | {shown} | {ours / median:.2f}x |")
    diff = (values["bfloat16"] - values["float32"]).abs()
    brightest = (values["bfloat16"].argmax(-1) == values["float32"].argmax(-1)).sum().item()
    print(
        f"p(' Paris'): float32 {values['float32'].min():.4g} … {values['float32'].max():.4g}; "
        f"bf16 max abs change {diff.max():.4f}, mean {diff.mean():.5f}; "
        f"each layer's brightest position equal at {brightest}/{diff.shape[0]} layers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
