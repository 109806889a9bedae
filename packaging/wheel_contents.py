"""Check what the built distributions hold: the wheel carries every widget's ESM and CSS and the
tiny tokenizer's corpus beside the code, the JupyterLab settings override that saves widget
state and the server extension that drops dead widget views on save, and no tests; the sdist
carries what a rebuild needs.

    python packaging/wheel_contents.py dist/nbvene-*.whl dist/nbvene-*.tar.gz
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nbvene"


def expected_data() -> set[str]:
    """The package's non-Python files, as the wheel names them."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and path.suffix in {".js", ".css", ".txt"}
    }


def check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(expected_data() - names)
    assert not missing, f"{wheel.name} lacks {missing}"
    assert any(n.endswith(".js") for n in names) and any(n.endswith(".css") for n in names)
    tests = sorted(n for n in names if n.startswith("tests/") or "conftest" in n or "/test_" in n)
    assert not tests, f"{wheel.name} holds test files: {tests[:5]}"
    for config in (
        "share/jupyter/lab/settings/overrides.d/nbvene.json",
        "etc/jupyter/jupyter_server_config.d/nbvene.json",
    ):
        assert any(n.endswith(f".data/data/{config}") for n in names), f"{wheel.name}: no {config}"
    assert "nbvene_jupyter/__init__.py" in names, f"{wheel.name} lacks the server extension"
    packages = ("nbvene/", "nbvene_jupyter/", "nbvene-")
    outside = sorted(n for n in names if not n.startswith(packages))
    assert not outside, f"{wheel.name} holds files outside the package: {outside[:5]}"
    print(f"{wheel.name}: {len(names)} files, widget ESM/CSS present, no tests")


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[-1] for n in archive.getnames()}
    for needed in (
        "pyproject.toml",
        "README.md",
        "nbvene/__init__.py",
        "nbvene/widgets/panel.js",
        "jupyter-config/overrides.json",
        "jupyter-config/server.json",
        "nbvene_jupyter/__init__.py",
    ):
        assert needed in names, f"{sdist.name} lacks {needed}"
    print(f"{sdist.name}: {len(names)} files, pyproject.toml, README.md and the package present")


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        if path.suffix == ".whl":
            check_wheel(path)
        else:
            check_sdist(path)


if __name__ == "__main__":
    main(sys.argv[1:])
