"""The built book in a real browser: every chapter's plotly figures draw, interactively (the notebooks hold
their JSON and a static PNG; the book draws the JSON), widgets render, nothing is fetched from another machine.

Headless Chromium from Debian (`scripts/install_chromium.sh`), driven by the ``playwright`` Python package
with ``executable_path`` (no browser download). The site is served from 127.0.0.1 on a free port by a
server the test starts and stops. Screenshots go to ``book/_build/screenshots/``.
Skipped, with the reason, where Chromium or playwright is missing or Chromium cannot start.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import nbformat
import pytest

from conftest import chromium_context

from iadtutor.tools import book, notebooks

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed: "
                               "pip install -e '.[dev]' (it drives the system's Chromium; no browser download).")

pytestmark = [pytest.mark.browser, pytest.mark.book, pytest.mark.slow]

TIMEOUT_MS = 30_000

# What a drawn figure has: plotly's SVG, and at least one mark in it (a trace group, or the raster
# <image> of a heatmap / go.Image, or a WebGL canvas).
FIGURES_JS = """() => Array.from(document.querySelectorAll('div.plotly-graph-div')).map(gd => ({
    id: gd.id,
    svgs: gd.querySelectorAll('svg.main-svg').length,
    marks: gd.querySelectorAll(
        '.scatterlayer .trace, .barlayer .trace, .boxlayer .trace, .violinlayer .trace, ' +
        '.heatmaplayer image, .imagelayer image, .contourlayer .trace, .pielayer .trace, ' +
        '.polarlayer .trace, .funnellayer .trace, .gl-container canvas').length,
    width: gd.getBoundingClientRect().width,
}))"""

# The HTML manager draws each saved widget view into a div.widget-subarea just before its <script>.
WIDGETS_JS = """() => {
    const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
    const areas = views.map(s => s.previousElementSibling).filter(e => e && e.classList.contains('widget-subarea'));
    return {
        views: views.length,
        rendered: areas.filter(a => a.querySelector('.jupyter-widgets')).length,
        errors: areas.filter(a => /Error (displaying|rendering)/.test(a.textContent)).map(a => a.textContent.slice(0, 200)),
    };
}"""


SETTLED_JS = """async () => {
    await document.fonts.ready;
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
}"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def site():
    return book.built_site()


@pytest.fixture(scope="module")
def base_url(site):
    """Serve the built HTML from 127.0.0.1 on a free port for the module; stopped afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser_context():
    """A fresh headless Chromium profile. Every request is recorded; any not to 127.0.0.1 is aborted."""
    with chromium_context(width=1280, timeout_ms=TIMEOUT_MS) as context:
        context.requests = []  # every URL any page asked for, in order

        def only_local(route):
            url = route.request.url
            if url.startswith(("http://127.0.0.1:", "data:", "blob:", "about:")):
                route.continue_()
            else:
                route.abort()

        context.on("request", lambda request: context.requests.append(request.url))
        context.route("**/*", only_local)
        yield context


def screenshot_dir(site: Path) -> Path:
    folder = site.parent / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(context, url: str):
    """Open ``url``; return (page, uncaught JavaScript errors)."""
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url, wait_until="load")
    page.evaluate(SETTLED_JS)  # so that screenshots are complete; the checks wait for what they need
    return page, errors


def wait_for(page, condition_js: str) -> None:
    """Wait until ``condition_js`` holds; on time-out carry on: the asserts then say what is missing."""
    try:
        page.wait_for_function(condition_js, timeout=TIMEOUT_MS)
    except sync_api.TimeoutError:
        pass


def non_local(requests: list[str], base_url: str) -> list[str]:
    return [url for url in requests if not url.startswith((base_url, "data:", "blob:", "about:"))]


def test_intro_page_has_the_sidebar_and_the_run_instructions(site, base_url, browser_context):
    page = browser_context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(base_url)  # index.html redirects to the intro
        page.wait_for_url("**/book/intro.html")
        assert "papermill" in page.inner_text("main")
        sidebar = page.locator("nav.bd-links a")
        assert sidebar.count() == len(book.expected_pages()), "the sidebar does not list every page"
    finally:
        page.close()
    assert not errors, f"JavaScript errors on the intro page: {errors}"


@pytest.mark.parametrize("path", [p for p in book.expected_pages() if p.startswith("book/")])
def test_book_page_renders_offline(site, base_url, browser_context, path):
    start = len(browser_context.requests)
    page, errors = open_page(browser_context, base_url + path)
    try:
        titles = page.locator("article h1")
        assert titles.count() and titles.first.inner_text().strip(), f"{path} has no title"
        page.screenshot(path=screenshot_dir(site) / f"{Path(path).stem}.png")
    finally:
        page.close()
    assert not errors, f"{path}: JavaScript errors: {errors}"
    remote = non_local(browser_context.requests[start:], base_url)
    assert not remote, f"{path}: requests that would leave the machine: {remote}"


@pytest.mark.parametrize("chapter", [p for p in book.expected_pages() if p.startswith("notebooks/")])
def test_chapter_figures_and_widgets_draw_offline(site, base_url, browser_context, chapter):
    start = len(browser_context.requests)
    page, errors = open_page(browser_context, base_url + chapter)
    try:
        # Widgets first: their Output areas may hold figures, drawn only once the widget renders.
        views = page.evaluate(WIDGETS_JS)["views"]
        wait_for(page, f"() => ({WIDGETS_JS})().rendered >= {views}")
        wait_for(page, "() => Array.from(document.querySelectorAll('div.plotly-graph-div'))"
                       ".every(gd => gd.querySelector('svg.main-svg'))")
        figures = page.evaluate(FIGURES_JS)
        widgets = page.evaluate(WIDGETS_JS)

        name = Path(chapter).stem
        page.screenshot(path=screenshot_dir(site) / f"{name}.png")
        first_figure = page.locator("div.plotly-graph-div").first
        if figures:
            first_figure.scroll_into_view_if_needed()
            first_figure.screenshot(path=screenshot_dir(site) / f"{name}-figure.png")
        first_widget = page.locator(".cell_output .jupyter-widgets").first
        if widgets["views"] and first_widget.count():
            first_widget.scroll_into_view_if_needed()
            first_widget.screenshot(path=screenshot_dir(site) / f"{name}-widget.png")
    finally:
        page.close()

    assert not errors, f"{chapter}: JavaScript errors: {errors}"
    blank = [f for f in figures if not (f["svgs"] and f["marks"] and f["width"] > 0)]
    assert not blank, f"{chapter}: plotly figures that did not draw: {blank}"
    notebook = nbformat.read(book.REPO_ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    expected = len(notebooks.plotly_outputs(notebook))  # in cells and widgets; committed as JSON + PNG
    assert len(figures) == expected, f"{chapter}: {len(figures)} interactive figures, the notebook has {expected}"
    if widgets["views"]:
        assert widgets["rendered"] == widgets["views"] and not widgets["errors"], \
            f"{chapter}: widgets that did not render: {widgets}"
    remote = non_local(browser_context.requests[start:], base_url)
    assert not remote, f"{chapter}: requests that would leave the machine: {remote}"


def test_no_request_left_the_machine(browser_context, base_url):
    """Over the whole module (runs last): every request went to the local server."""
    assert browser_context.requests, "no page was opened"
    remote = non_local(browser_context.requests, base_url)
    assert not remote, f"requests that would leave the machine: {remote}"
