"""The tutorials in notebooks/ run top to bottom, and every cell's outputs keep the shape that is
stored: as many outputs, of the same types and MIME keys (numbers are not compared). They run
with nbclient as `notebooks/execute.py` runs them (which leaves sweeps' progress bars out), one
after another in one kernel per test process, reset in between; after a deliberate change,
re-execute and store them with that script (a fresh kernel each)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
import execute  # noqa: E402  (notebooks/execute.py: one way to run them, here and by hand)

NEEDS_SMOLLM2 = "models.load("


def shape(outputs) -> list[tuple]:
    """What a cell shows, without its content: stream name, or output type and MIME keys.
    Consecutive writes to one stream are one output, however the kernel flushed them."""
    found: list[tuple] = []
    for out in outputs:
        if out.output_type == "stream":
            kind = ("stream", out.name)
            if found and found[-1] == kind:
                continue
        elif out.output_type == "error":
            kind = ("error", out.ename)
        else:
            kind = (out.output_type, *sorted(out.data))
        found.append(kind)
    return found


def _param(path: Path):
    marks = [pytest.mark.notebooks]
    if NEEDS_SMOLLM2 in path.read_text(encoding="utf-8"):
        marks.append(pytest.mark.smollm2)
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.fixture(scope="module")
def kernel():
    with execute.one_kernel() as manager:
        yield manager


@pytest.mark.parametrize("path", [_param(p) for p in execute.tutorials()])
def test_tutorial_runs_and_keeps_its_outputs(path: Path, tmp_path: Path, kernel):
    stored = nbformat.read(path, as_version=4)
    ran = execute.execute(path, cwd=tmp_path, kernel=kernel)  # files it writes go to tmp_path
    assert len(ran.cells) == len(stored.cells)
    for index, (old, new) in enumerate(zip(stored.cells, ran.cells, strict=True)):
        if old.cell_type != "code":
            continue
        expected = "raises-exception" in old.metadata.get("tags", [])  # shows a mistake on purpose
        errors = [o for o in new.outputs if o.output_type == "error"]
        if errors and not expected:
            pytest.fail(f"{path.name}, cell {index}:\n" + "\n".join(errors[0].traceback))
        assert shape(new.outputs) == shape(old.outputs), (
            f"{path.name}, cell {index} ({old.source.splitlines()[0]!r}) shows other outputs than"
            " are stored; if that is meant, re-run notebooks/execute.py"
        )


def test_every_tutorial_is_stored_with_outputs():
    """Stored executed (so they render on GitHub and nbviewer), each opening with the install
    cell that does nothing where nbvene is importable."""
    paths = execute.tutorials()
    assert len(paths) >= 6
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), f"{path.name} is not executed"
        assert "%pip install" in code[0].source and "find_spec" in code[0].source, path.name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_output_shapes_merge_stream_writes():
    out = nbformat.v4.new_output
    a = [out("stream", name="stdout", text="a"), out("stream", name="stdout", text="b")]
    b = [out("stream", name="stdout", text="ab"), out("display_data", data={"text/plain": "x"})]
    assert shape(a) == [("stream", "stdout")]
    assert shape(b) == [("stream", "stdout"), ("display_data", "text/plain")]
    assert shape(a) != shape(b)


def test_binder_builds_with_the_model_ready():
    """binder/: the CPU build of torch, JupyterLab and the widget front-ends; postBuild installs
    nbvene and loads SmolLM2 at build time, so the first notebook does not wait for a download."""
    requirements = (ROOT / "binder" / "requirements.txt").read_text(encoding="utf-8")
    assert "download.pytorch.org/whl/cpu" in requirements and "+cpu" in requirements
    for package in ("jupyterlab", "anywidget", "ipywidgets"):
        assert package in requirements
    post_build = ROOT / "binder" / "postBuild"
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    text = post_build.read_text(encoding="utf-8")
    assert "pip install" in text and "-e ." in text and "nv.models.load()" in text
