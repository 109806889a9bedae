"""No test asserts on wall-clock time: a slow or busy machine must not fail a correct change.
Timings belong in benchmarks/, which print what they measured. Waiting with a timeout for
something to happen is fine; asserting that it took less than so many seconds is not."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "process_time", "time"}


def _reads_clock(node: ast.AST, timed: set[str]) -> bool:
    """Whether an expression calls `time.<clock>()` or uses a name assigned from one."""
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and sub.func.attr in CLOCKS
            and isinstance(sub.func.value, ast.Name)
            and sub.func.value.id == "time"
        ):
            return True
        if isinstance(sub, ast.Name) and sub.id in timed:
            return True
    return False


def timing_asserts(source: str) -> list[int]:
    """Line numbers of asserts that depend on a clock reading, directly or through names."""
    tree = ast.parse(source)
    timed: set[str] = set()
    for _ in range(3):  # names assigned from names assigned from a clock
        for node in ast.walk(tree):
            assigns = isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign)
            if assigns and node.value and _reads_clock(node.value, timed):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                timed |= {t.id for t in targets if isinstance(t, ast.Name)}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Assert) and _reads_clock(node.test, timed)
    ]


def test_no_test_asserts_on_wall_clock_time():
    found = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        for line in timing_asserts(path.read_text(encoding="utf-8"))
    ]
    assert not found, f"assert on wall-clock time (move the timing to benchmarks/): {found}"


def test_the_check_finds_timing_asserts():
    assert timing_asserts("import time\nt = time.perf_counter()\nassert t < 1\n") == [3]
    direct = "import time\ns = time.time()\nrun()\nassert time.time() - s < 2\n"
    assert timing_asserts(direct) == [4]
    through = "s = time.monotonic()\nrun()\nd = time.monotonic() - s\nassert d < 2, d\n"
    assert timing_asserts(through) == [4]
    assert timing_asserts("x = run()\nassert x < 1\n") == []
