"""docs/widgets.md runs: its ```python blocks in order, in one namespace (a block after a
`<!-- no-test -->` line is skipped), with no browser and no kernel."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "widgets.md"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line, code) of each python block not marked no-test."""
    found = []
    for m in re.finditer(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", text, re.S):
        if m["before"].strip() != "<!-- no-test -->":
            found.append((text[: m.start("code")].count("\n") + 1, m["code"]))
    return found


def test_every_python_block_of_widgets_md_runs():
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 7
    namespace: dict = {}
    for line, code in blocks:
        # compiled with the doc's own line numbers, so a failure points into the Markdown
        exec(compile("\n" * (line - 1) + code, str(DOC), "exec"), namespace)
