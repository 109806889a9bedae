"""Markdown pages whose Python runs in tests: the page registered in `linecache` as Python."""

from __future__ import annotations

import linecache
from collections.abc import Iterable
from pathlib import Path


def python_view(page: Path, blocks: Iterable[tuple[int, str]]) -> str:
    """The page's file name, registered in `linecache` as its Python: every block (first line,
    code) at its own lines, the prose blank. Code that reads its caller's source (nnsight, which
    pyvene imports, does on every `Tensor.backward()`) then parses Python, not Markdown."""
    filename = str(page)
    if filename not in linecache.cache:
        lines = ["\n"] * len(page.read_text(encoding="utf-8").splitlines())
        for line, code in blocks:
            body = code.splitlines(keepends=True)
            lines[line - 1 : line - 1 + len(body)] = body
        # no modification time: linecache keeps the entry (as IPython does for its cells)
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return filename
