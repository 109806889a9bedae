"""Re-execute the tutorial notebooks in place, top to bottom, and store their outputs.

    .venv/bin/python notebooks/execute.py                      # every NN_*.ipynb, in order
    .venv/bin/python notebooks/execute.py 02_causal_tracing    # some of them

Each runs in a fresh kernel of this Python, from the notebooks/ folder; the time each took is
printed, wall clock and the kernel's CPU time (less sensitive to a busy machine).

They are stored in the form every viewer shows (`static`): each figure as the static form its
display carries (an `<img>` of the SVG, the steering panel's texts), no widget views and no
widget state. GitHub, nbviewer, `jupyter nbconvert --to html` (offline: no widget scripts from a
CDN), Colab, Binder before a cell is run, and a cloned, untrusted JupyterLab all show the same
figures; running a cell brings its live widget back.
`tests/test_notebooks.py` runs them the same way and compares with what is stored, but one
after another in one kernel (`one_kernel`), reset in between, so that nbvene is imported and
SmolLM2 loaded once.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parent
TIMEOUT = 3600  # seconds per cell: generous, for a busy machine; a tutorial takes minutes


def tutorials() -> list[Path]:
    """The tutorials, in order (smoke.ipynb is a test fixture, stored without outputs)."""
    return sorted(FOLDER.glob("[0-9][0-9]_*.ipynb"))


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def is_progress_bar(output) -> bool:
    """A sweep's progress bar, or its progress line emptied at the end: it means something only
    while the cell runs."""
    data = output.get("data", {})
    text = data.get("text/plain", "")
    return output.output_type == "display_data" and (
        text.startswith("nbvene:") or data == {"text/plain": ""}
    )


def is_live_only(output) -> bool:
    """A displayed widget with no static form (a progress bar, a bare widget): without its
    kernel it shows nothing, or an error."""
    data = output.get("data", {})
    static = [k for k in data if k != WIDGET_VIEW and k != "text/plain"]
    return output.output_type == "display_data" and WIDGET_VIEW in data and not static


def static(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as every viewer shows it: progress bars and live-only widgets left out,
    widget views dropped from the outputs (each keeps its static form beside them) and the
    widget state from the metadata (with it, nbconvert would load widget scripts from a CDN)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if not is_progress_bar(o) and not is_live_only(o)]
        for output in cell.outputs:
            output.get("data", {}).pop(WIDGET_VIEW, None)
    nb.metadata.pop("widgets", None)
    return nb


# What a notebook may have left in a shared kernel: its names, the extension and its %config.
# Modules stay imported, and so the embedded model stays loaded (nv.models.load caches it).
RESET = """
get_ipython().run_line_magic("reset", "-f")
if "nbvene" in get_ipython().extension_manager.loaded:
    get_ipython().extension_manager.unload_extension("nbvene")
get_ipython().config.pop("Intervene", None)
__import__("os").chdir({cwd!r})
"""


@contextlib.contextmanager
def one_kernel() -> Iterator[KernelManager]:
    """A kernel of this Python for several notebooks, one after another: `execute(kernel=)`."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    try:
        yield manager
    finally:
        manager.shutdown_kernel(now=True)


def _reset(kernel: KernelManager, cwd: Path) -> None:
    client = kernel.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        reply = client.execute_interactive(RESET.format(cwd=str(cwd)), store_history=False)
    finally:
        client.stop_channels()
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"could not reset the kernel: {reply['content']}")


def execute(
    path: Path, *, cwd: Path | None = None, kernel: KernelManager | None = None
) -> nbformat.NotebookNode:
    """Run one notebook (working directory `cwd`, else its own folder) in a new kernel, or in
    `kernel` after resetting it; return it with fresh outputs, in the form it is stored
    (`static`); the file is not written."""
    nb = nbformat.read(path, as_version=4)
    if kernel is not None:
        _reset(kernel, cwd or path.parent)
    client = NotebookClient(
        nb,
        km=kernel,
        timeout=TIMEOUT,
        kernel_name="python3",
        record_timing=False,  # stored notebooks change only where their outputs do
        resources={"metadata": {"path": str(cwd or path.parent)}},
    )
    client.execute()
    return static(nb)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: every tutorial)")
    args = parser.parse_args(argv)
    paths = tutorials()
    if args.names:
        wanted = {Path(n).stem for n in args.names}
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            sys.exit(f"no such tutorial: {', '.join(sorted(missing))}")
    for path in paths:
        start, cpu = time.perf_counter(), _children_cpu()
        nb = execute(path)
        nbformat.write(nb, path)
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
        print(f"{path.name}: {wall:.0f} s wall, kernel CPU {cpu:.0f} s", flush=True)


def _children_cpu() -> float:
    """CPU seconds of finished child processes: the kernels, once they have exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
