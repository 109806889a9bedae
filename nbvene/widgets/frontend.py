"""The widgets' front-end code as anywidget loads it: `shared.js` (helpers every widget uses)
joined in front of the widget's own ESM, since anywidget takes one ESM string."""

from __future__ import annotations

import pathlib

HERE = pathlib.Path(__file__).parent


def esm(name: str) -> str:
    """The ESM of the widget `name` (`heatmap`, `panel`, `tokens`): shared.js, then name.js."""
    files = (HERE / "shared.js", HERE / f"{name}.js")
    return "\n".join(f.read_text(encoding="utf-8") for f in files)
