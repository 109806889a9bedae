"""What a new user waits for before the first result: `import nbvene`, the first and a later
`nv.models.load()` in one process, and the README's first sweep on SmolLM2. The timings that
tests used to assert (a reload under 1 s) live here, printed, never asserted.

    .venv/bin/python benchmarks/first_contact.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TEN_LINES = """
base:   "The Colosseum is located in the city of"
source: "The Eiffel Tower is located in the city of"
patch:  block_output layer=* pos=-1
metric: logit_diff(" Paris", " Rome")
"""


def import_seconds(module: str) -> float:
    """Wall time of `import module` in a fresh interpreter, less the interpreter's start."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    for module in ("torch", "transformers", "nbvene"):
        runs = [import_seconds(module) for _ in range(args.repeats)]
        print(f"import {module:<12} median {statistics.median(runs):6.2f} s  runs {runs}")

    import nbvene as nv

    start = time.perf_counter()
    model, tok = nv.models.load()
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = nv.models.load()
    later = time.perf_counter() - start
    assert again[0] is model, "the embedded model was not cached"
    print(f"nv.models.load() first {first:6.2f} s, later {later * 1000:.2f} ms (same objects)")
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        nv.run(TEN_LINES, model=model, tokenizer=tok, progress=lambda done, total: None)
        runs.append(time.perf_counter() - start)
    median = statistics.median(runs)
    print(f"the README's first sweep (30 cells) median {median:.2f} s  runs {runs}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
