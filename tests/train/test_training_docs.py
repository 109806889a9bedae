"""docs/training.md runs: its ```python blocks, in order, in one namespace, in a temporary
folder (the page saves files)."""

import re
from pathlib import Path

import pytest
from markdown import python_view

PAGE = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def blocks() -> list[tuple[int, str]]:
    """(line of the first line of code, code) for each ```python block."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        if re.match(r"^```python\s*$", lines[i]):
            start = i + 1
            i = start
            while not lines[i].startswith("```"):
                i += 1
            found.append((start + 1, "\n".join(lines[start:i]) + "\n"))
        i += 1
    return found


def test_the_page_has_its_examples():
    assert len(blocks()) >= 8


def test_training_page_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    filename = python_view(PAGE, blocks())
    for line, code in blocks():
        try:
            exec(compile("\n" * (line - 1) + code, filename, "exec"), namespace)
        except Exception:
            pytest.fail(f"docs/training.md: the block at line {line} failed", pytrace=True)
    assert (tmp_path / "adder-das" / "config.json").is_file()
