"""The import graph between nbvene's subpackages, read from the source with `ast`: every import,
also those inside functions (which run later, but still tie the layers together), and none of
those under `if TYPE_CHECKING:` (which never run).

    python tools/import_graph.py            # the edges, each marked when it goes against the flow
    python tools/import_graph.py --verbose  # also the file and line of every import behind an edge
    python tools/import_graph.py --quiet    # only the edges against the flow (make lint)

The intended flow runs down `LAYERS`: a unit imports only units of lower layers; an edge upwards
or within a layer is marked `against the flow`, with the imports behind it. The script exits
with 1 when the graph has a cycle (units that import each other, directly or round a loop),
naming the units of each; `lint-imports` (import-linter, with the contracts in pyproject.toml)
enforces the same layers in CI.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nbvene"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("demo",),
    ("magics",),
    ("nbvene",),  # the package root, nbvene/__init__.py: the public API
    ("trace", "path_patch"),
    ("api",),
    ("steer", "train", "circuits"),
    ("widgets",),
    ("results",),
    ("figures", "engine", "backends"),
    ("bind",),
    ("interventions", "models", "files"),
    ("sites", "spec"),
    ("errors", "version"),
)
"""The units from top to bottom: `nbvene` is the package root, every other name a subpackage or
a module directly under it. A unit imports only units of lower layers, never one of its own
layer. The same layers, less the root, are the layers contract in pyproject.toml
(tests/test_layers.py checks that the two agree)."""

EXTENSION_HOOK = ("nbvene", "magics")
"""The one edge upwards that is by design: `%load_ext nbvene` calls the root's
`load_ipython_extension`, which imports the magics when called."""

RANK = {unit: depth for depth, layer in enumerate(LAYERS) for unit in layer}


@dataclass(frozen=True)
class Import:
    """One import statement's target, seen from one module."""

    importer: str  # dotted module name
    imported: str  # dotted module name (or the package, for names it defines)
    path: Path
    line: int
    in_function: bool


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, modules: set[str], root: Path = ROOT) -> list[Import]:
    """The imports of nbvene modules in one file, each with its line, and whether in a function."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def targets(node: ast.Import | ast.ImportFrom) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        # `from nbvene import figures` imports a module; `from nbvene import run`, a name of one
        named = [f"{base}.{alias.name}" for alias in node.names]
        return list(dict.fromkeys(name if name in modules else base for name in named))

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child.test):
                for grandchild in child.orelse:
                    visit(grandchild, in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in targets(child):
                    if target == PACKAGE or target.startswith(PACKAGE + "."):
                        found.append(Import(name, target, path, child.lineno, in_function))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, in_function or nested)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), in_function=False)
    return found


def unit(module: str) -> str:
    """The subpackage or top-level module a dotted name belongs to; `nbvene` for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def graph(root: Path = ROOT) -> dict[tuple[str, str], list[Import]]:
    """Edges between units, each with the imports behind it (imports within a unit left out)."""
    paths = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    edges: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for path in paths:
        for found in imports(path, modules, root):
            edge = (unit(found.importer), unit(found.imported))
            if edge[0] != edge[1]:
                edges[edge].append(found)
    return dict(edges)


def cycles(edges) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan), each a list of units."""
    successors: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        successors[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(successors[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted({n for edge in edges for n in edge}):
        if node not in index:
            connect(node)
    return found


def against_flow(importer: str, imported: str) -> bool:
    """An edge upwards or within a layer (or touching a unit `LAYERS` does not place yet)."""
    if (importer, imported) == EXTENSION_HOOK:
        return False
    if importer not in RANK or imported not in RANK:
        return True
    return RANK[imported] <= RANK[importer]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true", help="list every import")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="only the edges against the flow, and cycles"
    )
    args = parser.parse_args(argv)
    edges = graph()
    order = sorted(edges, key=lambda e: (RANK.get(e[0], -1), e[0], RANK.get(e[1], -1), e[1]))
    print(
        f"imports between the units of {PACKAGE}/ (top to bottom: "
        + " > ".join("/".join(layer) for layer in LAYERS)
        + ")"
    )
    for importer, imported in order:
        found = edges[importer, imported]
        late = sum(f.in_function for f in found)
        counts = f"{len(found)} import{'s' * (len(found) > 1)}"
        if late:
            counts += f", {late} inside functions"
        mark = "   <-- against the flow" if against_flow(importer, imported) else ""
        if args.quiet and not mark:
            continue
        print(f"  {importer:>13} -> {imported:<13} ({counts}){mark}")
        if args.verbose or mark:
            for f in found:
                where = f"{f.path.relative_to(ROOT)}:{f.line}"
                print(
                    f"{'':20}{where}  {f.importer} -> {f.imported}"
                    + ("  (in a function)" if f.in_function else "")
                )
    loops = cycles([e for e in edges if e != EXTENSION_HOOK])
    for loop in loops:
        print(f"cycle among {', '.join(loop)}", file=sys.stderr)
    if not loops:
        print("no cycles")
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main())
