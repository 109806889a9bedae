"""`notebooks/smoke.ipynb` executed end to end with nbclient, in a kernel of this environment's
Python: on a tiny Llama, and (marked smollm2) on SmolLM2-135M. Completion is asked of the same
kernel over the Jupyter protocol, as JupyterLab, Notebook 7 and VS Code ask it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client import BlockingKernelClient
from nbclient import NotebookClient

from tests.outputs import static_svg

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "smoke.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def execute(tmp_path: Path, model: str, *, then=None):
    """Run the notebook (with MODEL set) in a fresh kernel; `then(client)` runs before the
    kernel stops. Returns the executed notebook, also written to tmp_path."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source = f"MODEL = {model!r}"
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        if then is not None:
            then(client)
    nbformat.write(nb, tmp_path / "smoke.ipynb")
    return nb


def by_source(nb, start: str):
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start))


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def check(nb) -> None:
    # the kernel runs this environment's Python
    setup = by_source(nb, "import sys")
    assert text(setup).strip() == sys.executable
    # stored with -o: the live heatmap, which became the Result's display (widget + figure);
    # shown: the same, as the cell's value
    [stored] = by_source(nb, "%%intervene model -o trace").outputs
    assert stored.output_type == "display_data"
    assert "application/vnd.jupyter.widget-view+json" in stored.data
    assert static_svg(stored.data).count('class="cell"') > 0
    shown = by_source(nb, "layers =").outputs
    assert [o.output_type for o in shown] == ["execute_result"]
    assert shown[0].data["text/plain"].startswith("Result(p(' Paris'): layer")
    grid = re.search(r"layer (\d+) × pos (\d+)", shown[0].data["text/plain"])
    assert static_svg(shown[0].data).count('class="cell"') == int(grid[1]) * int(grid[2])
    sites = by_source(nb, "%nbvene sites").outputs[0].data
    assert "block_output" in sites["text/plain"] and "<table>" in sites["text/html"]
    dry = text(by_source(nb, "%%intervene --dry-run"))
    assert "nothing was run" in dry and "forward passes:" in dry
    code = text(by_source(nb, "%%intervene --show-code"))
    assert "= nv.run(" in code and "tokenizer=tok" in code
    # the bad spec: one short message, no Python traceback
    [error] = by_source(nb, "%%intervene model\nbase").outputs
    assert error.output_type == "error"
    lines = [ANSI.sub("", line) for line in "\n".join(error.traceback).splitlines()]
    assert lines[0] == "NbveneError: line 3: unknown component 'blok_output'"
    assert lines[1:3] == ["    patch:  blok_output layer=* pos=-1", "            ^"]
    assert lines[3].startswith("  hint: did you mean 'block_output'")
    assert len(lines) == 4


def complete_over_the_protocol(client) -> dict:
    kc = BlockingKernelClient(connection_file=client.km.connection_file)
    kc.load_connection_file()
    kc.start_channels()
    try:
        asked = {}
        for code in ("%%intervene model\npatch: block_o", "%%intervene model\nbase: {pro"):
            kc.complete(code, len(code))
            reply = kc.get_shell_msg(timeout=60)["content"]
            asked[code] = (reply["matches"], code[reply["cursor_start"] : reply["cursor_end"]])
        return asked
    finally:
        kc.stop_channels()


def test_the_smoke_notebook_on_a_tiny_model(tmp_path):
    asked = {}
    nb = execute(
        tmp_path, "tiny", then=lambda client: asked.update(complete_over_the_protocol(client))
    )
    check(nb)
    assert asked == {
        "%%intervene model\npatch: block_o": (["block_output"], "block_o"),
        "%%intervene model\nbase: {pro": (["{prompts}"], "{pro"),
    }


@pytest.mark.smollm2
def test_the_smoke_notebook_on_smollm2(tmp_path):
    check(execute(tmp_path, "smollm2"))
