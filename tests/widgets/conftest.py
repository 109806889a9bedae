"""Browser fixtures: Debian's Chromium driven by Playwright, offline, and a harness page that
mounts a widget's ESM with a fake anywidget model (no Jupyter)."""

from __future__ import annotations

import base64
import os
import pathlib
import shutil

import pytest

from nbvene.widgets.frontend import esm

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "nbvene" / "widgets"
HERE = pathlib.Path(__file__).resolve().parent
ARTIFACTS = pathlib.Path(os.environ.get("NBVENE_ARTIFACTS", ROOT / "artifacts"))
CHROMIUM = os.environ.get("NBVENE_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
# Playwright adds a fresh temporary profile, --no-sandbox and the rest; these it does not add.
# The resolver rule makes any host but loopback fail at once: nothing may come from a CDN.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
]
TYPES = {".js": "text/javascript", ".html": "text/html", ".css": "text/css"}


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None. CI (.ci/run) installs both and sets
    NBVENE_BROWSER_REQUIRED=1, so there a missing browser fails instead of skipping."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def artifacts() -> pathlib.Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser():
    missing = browser_missing()
    if missing:
        if os.environ.get("NBVENE_BROWSER_REQUIRED"):
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 800})
    pg = ctx.new_page()
    pg.errors = []
    pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()


def _serve(route):
    """http://widgets.test/pkg/X -> the package's file X (a widget's .js joined with shared.js,
    as anywidget loads it); /test/X -> this folder's."""
    rel = route.request.url.split("://widgets.test/", 1)[1].split("?")[0]
    top, _, name = rel.partition("/")
    base = {"pkg": PACKAGE, "test": HERE}.get(top)
    f = (base / name).resolve() if base else None
    if f is not None and base in f.parents and f.is_file():
        body = f.read_bytes()
        if base == PACKAGE and f.suffix == ".js":  # the ESM as anywidget gets it
            body = esm(f.stem).encode()
        route.fulfill(body=body, headers={"content-type": TYPES[f.suffix]})
    else:
        route.fulfill(status=404, body="not found")


def js_state(widget) -> dict:
    """A widget's synced state as Python serialises it for the browser; binary buffers become
    {"$bytes": base64}, which the harness turns into DataViews as anywidget does."""
    from ipywidgets.widgets.widget import _remove_buffers

    state, paths, buffers = _remove_buffers(widget.get_state())
    for path, buf in zip(paths, buffers, strict=True):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = {"$bytes": base64.b64encode(bytes(buf)).decode()}
    skip = {"layout", "tabbable", "tooltip", "_esm", "_css"}
    return {k: v for k, v in state.items() if k not in skip and not k.startswith("_model")}


@pytest.fixture
def mount(page):
    """mount(widget, name) renders the widget's own ESM and CSS with its Python state."""
    page.route("http://widgets.test/**", _serve)
    page.goto("http://widgets.test/test/harness.html")
    page.wait_for_function("window.harnessReady === true")

    def _mount(widget, name: str):
        """name: the widget's files in the package, name.js and name.css."""
        css = f"http://widgets.test/pkg/{name}.css" if (PACKAGE / f"{name}.css").exists() else None
        page.evaluate(
            "([e, c, s]) => mount(e, c, s)",
            [f"http://widgets.test/pkg/{name}.js", css, js_state(widget)],
        )
        return page

    return _mount
