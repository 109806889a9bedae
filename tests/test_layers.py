"""tools/import_graph.py: it sees imports inside functions and skips those under TYPE_CHECKING,
finds cycles, and its layers are the layers contract that import-linter checks (`make lint`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
import_graph = sys.modules["import_graph"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_imports_inside_functions_count_and_type_checking_ones_do_not(tmp_path):
    root = write(
        tmp_path,
        {
            "nbvene/__init__.py": "from nbvene.api import run\n",
            "nbvene/api.py": "from nbvene.engine import go\n\ndef run():\n    return go()\n",
            "nbvene/engine/__init__.py": "from nbvene.engine.core import go\n",
            "nbvene/engine/core.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from nbvene.results import Result\n"
                "def go():\n    from ..spec import parse\n    return parse\n"
            ),
            "nbvene/results.py": "",
            "nbvene/spec.py": "def parse():\n    from nbvene import errors\n",
            "nbvene/errors.py": "",
        },
    )
    edges = import_graph.graph(root)
    assert set(edges) == {
        ("nbvene", "api"),
        ("api", "engine"),
        ("engine", "spec"),
        ("spec", "errors"),
    }
    (found,) = edges["engine", "spec"]
    assert found.in_function and found.imported == "nbvene.spec" and found.line == 5
    assert import_graph.cycles(edges) == []


def test_a_cycle_is_found_also_round_a_loop():
    edges = {("a", "b"): [], ("b", "c"): [], ("c", "a"): [], ("c", "d"): [], ("e", "d"): []}
    assert import_graph.cycles(edges) == [["a", "b", "c"]]


def test_the_edges_against_the_flow():
    against = import_graph.against_flow
    assert not against("api", "engine") and not against("engine", "bind")
    assert against("bind", "engine") and against("results", "widgets")
    assert against("spec", "sites")  # one layer, independent
    assert not against(*import_graph.EXTENSION_HOOK)  # %load_ext nbvene


def test_the_layers_are_those_import_linter_checks():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    checked = [
        tuple(name.strip().strip("()") for name in layer.split("|")) for layer in contract["layers"]
    ]
    assert checked == [layer for layer in import_graph.LAYERS if layer != ("nbvene",)]


def test_every_unit_of_nbvene_has_a_layer():
    units = {p.stem if p.suffix == ".py" else p.name for p in (ROOT / "nbvene").iterdir()}
    units = {u for u in units if not u.startswith(("_", ".")) and u != "__pycache__"}
    placed = {unit for layer in import_graph.LAYERS for unit in layer}
    assert units <= placed, units - placed
