"""The main job on the embedded model: ROME-style causal tracing of SmolLM2-135M.

    python -m nbvene.demo [--out out/causal_trace.html]

Prints a text heatmap (prompt tokens down the side, layers across) and writes it as HTML.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import nbvene as nv

TRACE = """
# ROME-style causal tracing: corrupt the subject, restore one state at a time
base:    "The Eiffel Tower is located in the city of"
corrupt: noise 3σ on "The Eiffel Tower" samples=3
restore: block_output layer=* pos=*
metric:  p(" Paris")
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/causal_trace.html", help="where to write the HTML")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model, tok = nv.models.load()
    print(f"loaded SmolLM2-135M-Instruct in {time.perf_counter() - start:.1f} s")

    def progress(done: int, total: int) -> None:
        print(f"\r  {done}/{total} cells (3 noise samples each)", end="", flush=True)

    start = time.perf_counter()
    res = nv.run(TRACE, model=model, tokenizer=tok, progress=progress)
    seconds = time.perf_counter() - start
    print(f"\ncausal trace: {res.values.numel()} cells in {seconds:.1f} s")
    print(res.spec_text, end="\n\n")
    print(f"p(' Paris'): clean {float(res.clean):.3f}, corrupted {float(res.corrupted):.3f}")
    print(res)
    peak = res.values.argmax()
    layer, pos = divmod(int(peak), res.values.shape[1])
    token = res.axes[1].labels[pos]
    best = float(res.values.max())
    print(f"strongest restore: layer {layer}, token {pos} {token!r}: p = {best:.3f}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res.save_html(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
