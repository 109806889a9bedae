"""How soon a sweep shows progress, and how soon Stop returns, before and after issue 16.

"before" runs the sweep as a live one ran until then: the grid in chunks of `max_batch` rows,
Stop seen by the progress callback after a chunk. "after" is a live sweep now: `stop=` given,
so the grid's first cell runs alone before the chunks of `max_batch` rows, and Stop is asked
before every block. Stop is "clicked" `--stop-after` seconds into the sweep. Prints seconds and
ratios.

    .venv/bin/python benchmarks/progress.py                      # tiny Llama, CPU
    .venv/bin/python benchmarks/progress.py --model smollm2      # SmolLM2-135M, 30 × 11 trace
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time

import torch

import nbvene as nv

SPEC = """
base:    "The Eiffel Tower is located in the city of"
corrupt: noise 3σ on "The Eiffel Tower" samples={samples}
restore: block_output layer=* pos=*
metric:  p(" Paris")
"""


def first_progress(model, tok, spec: str, max_batch: int, after: bool) -> float:
    """Seconds from the call to the first progress callback (the sweep then stops)."""
    started = time.perf_counter()
    seen: list[float] = []

    def progress(done, total):
        seen.append(time.perf_counter() - started)
        raise KeyboardInterrupt

    stop = (lambda: False) if after else None
    with contextlib.suppress(nv.SweepInterrupted):
        nv.run(spec, model=model, tokenizer=tok, max_batch=max_batch, progress=progress, stop=stop)
    return seen[0]


def stop_latency(model, tok, spec: str, max_batch: int, after: bool, at: float) -> float:
    """Seconds from a Stop set `at` seconds after the call to the sweep's return."""
    clicked = threading.Event()
    when: list[float] = []

    def click():
        when.append(time.perf_counter())
        clicked.set()

    def progress(done, total):  # "before": the live sweep's check, after each chunk
        if clicked.is_set():
            raise KeyboardInterrupt

    timer = threading.Timer(at, click)
    timer.start()
    try:
        nv.run(
            spec,
            model=model,
            tokenizer=tok,
            max_batch=max_batch,
            progress=progress,
            stop=clicked.is_set if after else None,
        )
        return float("nan")  # finished before the click
    except nv.SweepInterrupted:
        return time.perf_counter() - when[0]
    finally:
        timer.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--stop-after", type=float, default=None, help="seconds (default: auto)")
    args = parser.parse_args()
    if args.model == "smollm2":
        from nbvene.models.smollm2 import embedded

        model, tok = embedded()
    else:
        model, tok = nv.models.tiny("llama", layers=8)
    spec = SPEC.format(samples=args.samples)
    nv.run(spec, model=model, tokenizer=tok, max_batch=args.max_batch, progress=lambda d, t: None)
    print(f"model {args.model}, {torch.get_num_threads()} threads, max_batch {args.max_batch}")
    rows = {}
    for when in ("before", "after"):  # the median of three: a shared machine's load varies
        times = [first_progress(model, tok, spec, args.max_batch, when == "after") for _ in "abc"]
        rows[when] = [statistics.median(times)]
    at = args.stop_after if args.stop_after is not None else 1.5 * rows["before"][0]
    for when in ("before", "after"):
        rows[when].append(stop_latency(model, tok, spec, args.max_batch, when == "after", at))
    print(f"{'':8}{'first progress (s)':>20}{'Stop to return (s)':>20}")
    for when, (first, stop) in rows.items():
        print(f"{when:8}{first:>20.3f}{stop:>20.3f}")
    b, a = rows["before"], rows["after"]
    print(f"{'ratio':8}{b[0] / a[0]:>19.1f}×{b[1] / a[1]:>19.1f}×")


if __name__ == "__main__":
    main()
