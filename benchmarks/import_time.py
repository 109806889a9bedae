"""What `import nbvene` costs beyond `import torch` (the budget: 2 s on a 2-core CPU machine),
and whether it imported transformers (it must not: that is left to the first model built).

    .venv/bin/python benchmarks/import_time.py [--repeats 7]

Each import runs in a fresh interpreter started in the repository root, `import torch` and
`import torch; import nbvene` alternating, and the medians are compared. The exit status is 1
when the difference is over the budget or transformers was imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 2.0  # seconds over `import torch`
HEAVY = ("transformers", "tokenizers", "pandas", "altair", "ipywidgets", "anywidget")
TIMED = """
import sys, time
t = time.perf_counter()
{imports}
print(time.perf_counter() - t, *[m for m in {heavy!r} if m in sys.modules])
"""


def timed(imports: str) -> tuple[float, list[str]]:
    """Seconds `imports` took in a fresh interpreter, and the heavy packages it left imported."""
    code = TIMED.format(imports=imports, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    seconds, *heavy = done.stdout.split()
    return float(seconds), heavy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    torch_runs, nbvene_runs, heavy = [], [], set()
    for _ in range(args.repeats):
        torch_runs.append(timed("import torch")[0])
        seconds, found = timed("import torch; import nbvene")
        nbvene_runs.append(seconds)
        heavy.update(found)
    base, both = statistics.median(torch_runs), statistics.median(nbvene_runs)
    print(f"import torch                 median {base:5.2f} s  runs {_listed(torch_runs)}")
    print(f"import torch; import nbvene  median {both:5.2f} s  runs {_listed(nbvene_runs)}")
    print(f"nbvene beyond torch          {both - base:5.2f} s  (budget {BUDGET:.1f} s)")
    print(f"of {', '.join(HEAVY)}: import nbvene imported {', '.join(sorted(heavy)) or 'none'}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0 if both - base <= BUDGET and not heavy else 1


def _listed(runs: list[float]) -> str:
    return " ".join(f"{r:.2f}" for r in runs)


if __name__ == "__main__":
    sys.exit(main())
