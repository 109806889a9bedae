"""A Result as a self-contained HTML page: the SVG figure, the spec and where it ran. No
scripts and no links, so it opens offline and anywhere."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from nbvene.figures.svg import svg

if TYPE_CHECKING:
    from nbvene.results import Result

STYLE = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}"
    "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}"
    "figure{margin:0;overflow-x:auto}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;font-size:.9em}"
    "dt{color:#666}"
)
META = ("model", "family", "dtype", "device", "seed", "nbvene", "transformers", "torch")


def page(result: Result) -> str:
    """The HTML page `Result.save_html` writes (the tooltips of the cells work in a browser)."""
    facts = "".join(
        f"<dt>{escape(key)}</dt><dd>{escape(str(result.meta[key]))}</dd>"
        for key in META
        if result.meta.get(key) is not None
    )
    title = escape(result.metric or "collect")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>nbvene · {title}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<figure>{svg(result)}</figure>"
        f"<pre>{escape(result.spec_text)}</pre>"
        f"<dl>{facts}</dl></body></html>\n"
    )
