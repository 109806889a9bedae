"""The public surface: `import nbvene` stays light (no transformers, pandas, widgets), every name
the README, docs/ and the tutorials use is there where they say, and the package root exports
those names and no more.

Each check runs in a fresh interpreter: in this one, other tests have imported more of nbvene
(and transformers) already.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import nbvene as nv

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("transformers", "tokenizers", "pandas", "altair", "ipywidgets", "anywidget")
"""Imported where first needed, never by `import nbvene`."""
DEPRECATED = {"load": "load_interventions"}
"""Old names the package root still answers to, with a DeprecationWarning."""

REFERENCE = re.compile(r"(?<![\w.])(nv|nbvene)((?:\.[A-Za-z_]\w*)+)")
FROM_IMPORT = re.compile(
    r"\bfrom\s+(nbvene(?:\.\w+)*)\s+import\s+\(?\s*(\w+(?:\s+as\s+\w+)?(?:\s*,\s*\w+(?:\s+as\s+\w+)?)*)"
)
BACKTICKED = re.compile(r"`([A-Za-z_]\w*)\b")


def documents() -> dict[str, str]:
    """README.md, docs/*.md and the text of every notebook cell, by path."""
    texts = {p: (ROOT / p).read_text(encoding="utf-8") for p in ["README.md"]}
    for path in sorted((ROOT / "docs").glob("*.md")):
        texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        texts[str(path.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells)
    return texts


def references() -> dict[str, str]:
    """Every dotted name the documents use, `nv.` written as `nbvene.`, with one place it is
    used. `nv.x.y` must be reachable by attribute from `import nbvene as nv`; `nbvene.x.y` and
    `from nbvene.x import y` may import submodules on the way."""
    found: dict[str, str] = {}
    for path, text in documents().items():
        for match in REFERENCE.finditer(text):
            found.setdefault(match.group(1) + match.group(2), path)
        for match in FROM_IMPORT.finditer(text):
            for name in match.group(2).split(","):
                found.setdefault(f"{match.group(1)}.{name.split()[0]}", path)
    return found


RESOLVE = r"""
import importlib, importlib.util, inspect, json, re, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import nbvene

def instance_attribute(cls, name):
    # an attribute set in __init__ (`self.result = ...`) or declared as a field
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return True
        init = vars(klass).get("__init__")
        if init is not None and klass.__module__.startswith("nbvene"):
            if re.search(rf"self\.{name}\s*[:=]", inspect.getsource(init)):
                return True
    return False

def resolve(reference):
    by_attribute = reference.startswith("nv.")
    parts = reference.split(".")[1:]
    obj, path = nbvene, "nbvene"
    for part in parts:
        path += "." + part
        # `nbvene.train` in prose is the subpackage, `nv.train` the function the root exports
        package = hasattr(obj, "__path__")
        if package and not by_attribute and importlib.util.find_spec(path):
            obj = importlib.import_module(path)
        elif hasattr(obj, part):
            obj = getattr(obj, part)
        elif inspect.isclass(obj) and instance_attribute(obj, part):
            return None
        else:
            return f"{path} is not there"
    return None

# nv.x first: importing nbvene.x for a later reference would make nv.x an attribute
references = sorted(json.loads(sys.stdin.read()), key=lambda r: not r.startswith("nv."))
print(json.dumps({r: resolve(r) for r in references}))
"""


def fresh_python(code: str, stdin: str = "") -> str:
    """What `code` prints in a new interpreter started in the repository root."""
    ran = subprocess.run(
        [sys.executable, "-c", code], input=stdin, cwd=ROOT, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout


def test_import_nbvene_imports_no_transformers_pandas_or_widgets():
    loaded = fresh_python(f"import sys, nbvene; print([m for m in {HEAVY!r} if m in sys.modules])")
    # python -X importtime -c "import nbvene" shows which module imported it
    assert loaded.strip() == "[]", f"import nbvene imported {loaded.strip()}"


def test_every_name_the_docs_use_is_where_they_say():
    found = references()
    answer = json.loads(fresh_python(RESOLVE, stdin=json.dumps(sorted(found))))
    missing = {r: f"{problem} (in {found[r]})" for r, problem in answer.items() if problem}
    assert not missing, missing
    assert len(found) > 40  # the extraction found the docs' names (nv.run, nbvene.widgets, ...)


def test_the_root_exports_what_the_docs_use_and_no_more():
    texts = documents()
    used = {
        m.group(2).split(".")[1]
        for t in texts.values()
        for m in REFERENCE.finditer(t)
        if m.group(1) == "nv"
    }
    used |= {
        name.split()[0]
        for t in texts.values()
        for m in FROM_IMPORT.finditer(t)
        if m.group(1) == "nbvene"
        for name in m.group(2).split(",")
    }
    mentioned = {m.group(1) for t in texts.values() for m in BACKTICKED.finditer(t)}
    assert used - set(DEPRECATED) <= set(nv.__all__)
    # a type the docs name bare (`Result`, `Trained`) counts as used
    assert set(nv.__all__) <= used | mentioned, set(nv.__all__) - used - mentioned
    assert sorted(nv.__all__) == nv.__all__


@pytest.mark.parametrize(("old", "new"), sorted(DEPRECATED.items()))
def test_old_names_still_work_and_warn(old, new):
    with pytest.warns(DeprecationWarning, match=f"nv.{new}"):
        assert getattr(nv, old) is getattr(nv, new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(nv, new) is not None
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        nv.lod  # noqa: B018
