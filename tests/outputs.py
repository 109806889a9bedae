"""What a stored notebook output holds: the SVG inside a Result's one static form (the
`text/html` `<img>` whose source is the SVG as a base64 data URI)."""

import base64
import re

IMG = re.compile(r"<img\b[^>]*>")
SOURCE = re.compile(r"""src=["']data:image/svg\+xml;base64,([^"']+)["']""")


def static_svgs(html: str) -> list[str]:
    """Every figure in `html` (an output's text/html, or a whole converted page, whose
    attributes nbconvert may reorder), decoded."""
    tags = [tag for tag in IMG.findall(html) if "nbvene-figure" in tag]
    return [base64.b64decode(SOURCE.search(tag)[1]).decode("utf-8") for tag in tags]


def static_svg(data: dict) -> str:
    """The one SVG figure of a display's data, decoded; fails unless there is exactly one."""
    [figure] = static_svgs(data["text/html"])
    return figure
