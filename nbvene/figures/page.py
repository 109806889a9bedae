"""A Result as HTML: `page`, a self-contained page with the SVG figure, the spec and where it
ran; and `figure_html`, the figure as the one static form a notebook output stores. No scripts
and no links, so both open offline and anywhere."""

from __future__ import annotations

import base64
import re
from html import escape, unescape
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
INERT = re.compile(r'<title>[^<]*</title>| data-[a-z-]+="[^"]*"')
"""What an SVG shown as an image cannot use: tooltips and the `data-*` attributes scripts read
(escaped text, so neither holds a `<` or a `"`)."""
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


def figure_html(result: Result) -> str:
    """The static figure as a notebook output stores it (`svg_image` of the Result's SVG)."""
    return svg_image(svg(result), result.metric or "collect")


def svg_image(drawn: str, alt: str) -> str:
    """An SVG figure as the one static form a notebook output stores: one `<img>` whose source
    is the SVG itself (a base64 data URI), tooltips and `data-*` attributes left out, the
    figure's own title (else `alt`) as its `alt` text.

    Every viewer keeps it: JupyterLab and Notebook 7 with the notebook untrusted (their
    sanitiser strips inline `<svg>` from HTML but keeps its text, and never shows
    `image/svg+xml` untrusted), nbconvert and nbviewer, GitHub, Colab and VS Code. Tooltips live
    in the widget and in `save_html`'s page."""
    headline = re.search(r"<title>([^<]*)</title>", drawn)  # the figure's own, for screen readers
    text = escape(unescape(headline[1]) if headline else alt)
    figure = INERT.sub("", drawn)
    source = base64.b64encode(figure.encode("utf-8")).decode("ascii")
    return (
        f'<div class="nbvene-result"><img class="nbvene-figure" alt="{text}" '
        f'src="data:image/svg+xml;base64,{source}"></div>'
    )
