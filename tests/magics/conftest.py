"""A real IPython shell with `%load_ext nbvene` and a tiny Llama (`model`, `tok`) in its
namespace.

IPython's test shell is one per process (`start_ipython`). Each test gets it with the extension
freshly loaded, in a working directory without a pyproject.toml, and leaves it as it found it:
extension unloaded, the variables it made and `%config Intervene` settings gone.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.testing.globalipapp import start_ipython

import nbvene as nv

ANSI = re.compile(r"\x1b\[[0-9;]*m")

BASE = "The Colosseum is located in the city of"
SOURCE = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="session")
def tiny():
    return nv.models.tiny("llama")


@pytest.fixture
def shell(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no [tool.nbvene] above it: the options keep their defaults
    start_ipython()  # once a process; later calls return None
    ip = TerminalInteractiveShell.instance()
    before = set(ip.user_ns)
    ip.extension_manager.unload_extension("nbvene")
    assert ip.extension_manager.load_extension("nbvene") is None
    model, tok = tiny
    ip.user_ns.update(model=model, tok=tok, BASE=BASE, SOURCE=SOURCE)
    yield ip
    ip.extension_manager.unload_extension("nbvene")
    for name in set(ip.user_ns) - before:
        del ip.user_ns[name]
    ip.config.pop("Intervene", None)


@pytest.fixture
def intervene(shell):
    """The loaded `Intervene` magics (and configurable) instance."""
    return shell.magics_manager.registry["Intervene"]


@pytest.fixture
def cell(shell, capsys):
    """Run a cell: its value, its error, and what it printed (stdout, stderr), without colour."""

    def run(text: str) -> SimpleNamespace:
        result = shell.run_cell(text)
        out, err = capsys.readouterr()
        return SimpleNamespace(
            value=result.result,
            error=result.error_in_exec,
            out=ANSI.sub("", out),
            err=ANSI.sub("", err),
        )

    return run


@pytest.fixture
def complete(shell):
    """What tab completion offers at the cursor (default: the end), asked as ipykernel asks:
    the whole cell and an offset."""

    def offered(text: str, cursor: int | None = None) -> list[str]:
        cursor = len(text) if cursor is None else cursor
        with provisionalcompleter():
            return [c.text for c in shell.Completer.completions(text, cursor)]

    return offered


PATCH = f'''base:   "{BASE}"
source: "{SOURCE}"
patch:  block_output layer=* pos=-1
metric: logit_diff(" Paris", " Rome")
'''


@pytest.fixture
def patch_spec() -> str:
    """Activation patching of the block output at the last token, per layer (2 cells)."""
    return PATCH


@pytest.fixture
def expected(tiny):
    """What nv.run gives for `patch_spec`, to compare the magic with."""
    model, tok = tiny
    return nv.run(PATCH, model=model, tokenizer=tok)
