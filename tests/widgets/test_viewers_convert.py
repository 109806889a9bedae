"""The stored tutorials as GitHub, nbviewer and `jupyter nbconvert --to html` see them: stored in
the form every viewer shows (no widget views, no widget state), each Result with its figure;
converted to HTML, every figure is in the page and draws in Chromium offline, and the page loads
nothing from a CDN but what nbconvert's template adds to any notebook (MathJax, Mermaid,
RequireJS: none of them needed for a figure)."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from html import unescape
from pathlib import Path

import nbformat
import pytest

from tests.outputs import static_svgs

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "notebooks"))
import execute  # noqa: E402  (notebooks/execute.py: the tutorials, in order)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CDN = re.compile(r"https?://[^\s\"'<>)]*(?:cdn|unpkg|jsdelivr)[^\s\"'<>)]*", re.IGNORECASE)
TUTORIALS = [pytest.param(p, id=p.stem) for p in execute.tutorials()]


def convert(path: Path, folder: Path) -> str:
    """`jupyter nbconvert --to html`, as a user (or nbviewer) runs it."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "html",
            "--output-dir",
            folder,
            path,
        ],
        check=True,
        capture_output=True,
    )
    return (folder / f"{path.stem}.html").read_text(encoding="utf-8")


@cache
def template_cdn() -> frozenset[str]:
    """The CDN URLs nbconvert's HTML template puts in every page, even an empty notebook's."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.ipynb"
        nbformat.write(nbformat.v4.new_notebook(), empty)
        return frozenset(CDN.findall(convert(empty, Path(folder))))


def text_of(html: str) -> str:
    """What a page reads as, tags left out."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def results(nb) -> list:
    """The outputs that show a Result (a sweep, a causal trace, a steering sweep) or a
    Circuit."""
    return [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("data", {}).get("text/plain", "").startswith(("Result(", "Circuit by "))
    ]


@pytest.mark.parametrize("path", TUTORIALS)
def test_a_tutorial_is_stored_as_every_viewer_shows_it(path):
    nb = nbformat.read(path, as_version=4)
    assert "widgets" not in nb.metadata  # with it, nbconvert would add the widgets' CDN scripts
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not any(WIDGET_VIEW in o.get("data", {}) for o in outputs)
    for output in results(nb):  # each Result with its figure, stored once
        assert "image/svg+xml" not in output.data
        assert len(static_svgs(output.data["text/html"])) == 1
    for output in outputs:
        assert "object at 0x" not in output.get("data", {}).get("text/plain", "")


@pytest.mark.notebooks  # converts every tutorial: a minute or two on 2 busy cores
@pytest.mark.parametrize("path", TUTORIALS)
def test_nbconvert_html_holds_every_figure_and_needs_no_cdn(path, tmp_path, page):
    nb = nbformat.read(path, as_version=4)
    html = convert(path, tmp_path)
    stored = [f for o in results(nb) for f in static_svgs(o.data["text/html"])]
    assert static_svgs(html) == stored  # every figure, in order
    panels = [
        o.data["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "nbvene-panel-static" in o.get("data", {}).get("text/html", "")
    ]
    assert all(text_of(panel) in text_of(html) for panel in panels)  # the panel's texts
    assert set(CDN.findall(html)) <= template_cdn()  # no widget manager from unpkg or jsdelivr
    # offline (every host but loopback fails at once), every figure draws at its size
    page.set_content(html, wait_until="load")
    sizes = page.locator("img.nbvene-figure").evaluate_all(
        "es => Promise.all(es.map(e => e.decode().then(() => [e.naturalWidth, e.naturalHeight])))"
    )
    assert len(sizes) == len(stored)
    assert all(w > 100 and h > 40 for w, h in sizes), sizes
