"""Run the README's first two Python examples verbatim ("Ten lines" and the ROME causal trace on
the embedded SmolLM2), as a new user pastes them after `pip install nbvene`, and check what
they promise. Run by packaging/check.sh in a fresh venv holding only the built wheel.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def main() -> None:
    ten_lines, rome = python_blocks(README.read_text(encoding="utf-8"))[:2]
    namespace: dict = {}
    exec(compile(ten_lines, "README.md: Ten lines", "exec"), namespace)
    res = namespace["res"]
    assert tuple(res.values.shape) == (30,), res.values.shape
    assert res.axes[0].labels == tuple(range(30))
    frame = res.to_pandas()
    assert list(frame.columns) == ["layer", "value"] and len(frame) == 30, frame.columns
    print("Ten lines: ok,", type(frame).__module__, "frame of", len(frame), "rows")

    exec(compile(rome, "README.md: causal trace", "exec"), namespace)
    trace = namespace["res"]
    assert tuple(trace.values.shape) == (30, 10), trace.values.shape
    top = float(trace.values[:, 9].max())  # the last token carries " Paris" in late layers
    assert 0.5 < top < 1.0, top
    print(f"causal trace: ok, max p(' Paris') at the last token {top:.3f}")


if __name__ == "__main__":
    sys.exit(main())
