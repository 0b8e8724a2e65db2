"""Build and check the course website (Jupyter Book 1) from the committed, executed notebooks.

The book's source root is the repository root (``book/_config.yml``, ``book/_toc.yml``); the chapters are
``notebooks/0*.ipynb`` as committed, outputs included (nothing is executed). Every built page works with no
network: the JavaScript it needs is served from ``book/_assets/vendor/`` (git-ignored), filled by
:func:`vendor_assets` from the installed ``plotly`` package and from three npm tarballs, each pinned by
version and sha512.

What a notebook's outputs must be for the book (checked by :func:`notebook_problems`): every code cell
executed; a plotly figure as one output holding both ``application/vnd.plotly.v1+json`` (JupyterLab
draws it) and ``text/html`` with a ``<div>`` and an inline ``Plotly.newPlot`` call but no plotly.js, no
MathJax and no ``<script src=...>`` (the book draws it with its own plotly.js), which is what
``iadtutor.viz.core.setup_notebook()`` selects; widgets with their state saved in the notebook metadata.

Command line::

    python -m iadtutor.tools.book assets    # fill book/_assets/vendor/ (npm registry needed once, then cached)
    python -m iadtutor.tools.book build     # assets + jupyter-book build -> book/_build/html, then check
    python -m iadtutor.tools.book check     # only check an existing build (log + HTML)
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import html
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from iadtutor.files import write_bytes_atomic

# The repository whose book is built; IADTUTOR_BOOK_ROOT points the tests at another checkout.
REPO_ROOT = Path(os.environ.get("IADTUTOR_BOOK_ROOT") or Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class NpmAsset:
    """One npm package tarball and the files of it that the book serves."""

    spec: str  # "name@exact-version"
    integrity: str  # the registry's sha512 of the tarball ("sha512-<base64>")
    source: str  # folder or file inside the tarball
    target: str  # where it goes under book/_assets/vendor/


NPM_ASSETS = (
    # require.js: the AMD loader the ipywidgets HTML manager needs.
    NpmAsset("requirejs@2.3.8",
             "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
             "package/require.js", "require.js"),
    # The ipywidgets 8 HTML manager (draws the saved widget state of a notebook in a static page).
    NpmAsset("@jupyter-widgets/html-manager@1.0.7",
             "sha512-2xGwS7vVd2RGlKMiSqj1vYv2X59V73ygefUodhzy9Bho0mswWT/yo3Cg7MaYOqwozQjNo5k3rbJ3cETXWUwJ/g==",
             "package/dist", "html-manager"),
    # MathJax 3 for the formulas (Sphinx would load it from a CDN).
    NpmAsset("mathjax@3.2.2",
             "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
             "package/es5", "mathjax"),
)

# How the browser tests start Chromium: headless, no sandbox (root in containers), nothing phoned home.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--disable-dev-shm-usage")

# Build-log lines that are not problems.  Each entry: (regular expression, why it is harmless).
HARMLESS_LOG_LINES: tuple[tuple[str, str], ...] = ()

# Signs of a failed cell in a built page.  myst-nb renders an error output as a "traceback" block.
HTML_ERROR_PATTERNS = (
    (re.compile(r"Traceback \(most recent call last\)"), "a Python traceback"),
    (re.compile(r'class="[^"]*\boutput traceback\b'), "an error output (cell raised)"),
)
# Looked for in cell outputs only (the prose of a chapter may name an exception).
OUTPUT_ERROR = re.compile(r"\b(ModuleNotFoundError|ImportError|NameError|FileNotFoundError)\b")
CELL_OUTPUT = re.compile(r'<div class="cell_output.*?(?=<div class="cell |</section>|$)', re.S)
# A stderr output is a problem when it reports an error or a warning (progress bars are fine).
STDERR_BLOCK = re.compile(r'<div class="output stderr[^"]*">(.*?)</div>\s*</div>', re.S)
STDERR_PROBLEM = re.compile(r"(Error|Exception|Traceback|Warning)\b")


def book_dirs(root: Path = REPO_ROOT) -> tuple[Path, Path, Path]:
    """Return (book folder, built HTML folder, build log path) for a repository root."""
    book = Path(root) / "book"
    if not (book / "_config.yml").is_file():
        raise FileNotFoundError(f"{book / '_config.yml'} not found: expected the iadtutor repository at {root}.")
    return book, book / "_build" / "html", book / "_build" / "build.log"


def chapter_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The notebooks the table of contents picks up (glob ``notebooks/0*``), in chapter order."""
    return sorted(p for p in (Path(root) / "notebooks").glob("0*.ipynb"))


def expected_pages(root: Path = REPO_ROOT) -> list[str]:
    """Paths, relative to the HTML folder, of every page the book must have."""
    pages = ["book/intro.html", "book/papers.html", "book/datasets.html", "book/results.html",
             "book/real_results.html"]
    return pages + [f"notebooks/{nb.stem}.html" for nb in chapter_notebooks(root)]


# --------------------------------------------------------------------------------------------- assets
def _sri_sha512(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def _npm_tarball(asset: NpmAsset, cache: Path) -> Path:
    """The package tarball from the cache, or fetched with ``npm pack``; checked against its pinned sha512."""
    cache.mkdir(parents=True, exist_ok=True)
    name, version = asset.spec.rsplit("@", 1)
    tarball = cache / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"npm not found: it is needed once to fetch {asset.spec} into {cache}.")
        subprocess.run([npm, "pack", asset.spec, "--pack-destination", str(cache), "--silent"],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
    if _sri_sha512(tarball) != asset.integrity:
        tarball.unlink()
        raise RuntimeError(f"{tarball.name}: sha512 differs from the pinned integrity of {asset.spec}; deleted it.")
    return tarball


def _extract(tarball: Path, source: str, target: Path) -> None:
    """Copy ``source`` (a file or folder inside the tarball) to ``target``, leaving out source maps."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers()
                       if (m.name == source or m.name.startswith(source + "/"))
                       and m.isfile() and not m.name.endswith(".map")]
            tar.extractall(staging, members=members, filter="data")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staging / source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def vendor_assets(root: Path = REPO_ROOT, cache: Path | None = None) -> Path:
    """Fill ``book/_assets/vendor/`` with plotly.js, require.js, the widget manager and MathJax.

    plotly.min.js is copied from the installed ``plotly`` package (so the page's plotly.js always matches
    the plotly that made the figures); the others come from npm tarballs, cached in ``cache``
    (default ``build/npm-cache`` in the repository). Returns the vendor folder. Fast when up to date.
    """
    import plotly

    book, _, _ = book_dirs(root)
    vendor = book / "_assets" / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache else Path(root) / "build" / "npm-cache"

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not plotly_js.is_file():
        raise FileNotFoundError(f"{plotly_js} not found: the installed plotly package has no plotly.min.js.")
    served = vendor / "plotly.min.js"
    if not served.is_file() or served.read_bytes() != plotly_js.read_bytes():
        write_bytes_atomic(served, plotly_js.read_bytes())

    for asset in NPM_ASSETS:
        stamp = vendor / f".{asset.target}.stamp"
        if stamp.is_file() and stamp.read_text() == asset.integrity and (vendor / asset.target).exists():
            continue
        _extract(_npm_tarball(asset, cache), asset.source, vendor / asset.target)
        write_bytes_atomic(stamp, asset.integrity.encode())
    return vendor


# ---------------------------------------------------------------------------------------------- build
def build(root: Path = REPO_ROOT, fresh: bool = True) -> subprocess.CompletedProcess:
    """Vendor the assets, then run ``jupyter-book build``; its output goes to ``book/_build/build.log``.

    ``fresh`` rebuilds every page (``--all``), so the log holds the warnings of every page, not only of
    the pages changed since the last build. Raises ``RuntimeError`` when jupyter-book fails.
    """
    book, _, log_path = book_dirs(root)
    vendor_assets(root)
    shutil.rmtree(book / "_build" / "screenshots", ignore_errors=True)  # they showed the previous build
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(root),
               "--config", str(book / "_config.yml"), "--toc", str(book / "_toc.yml"),
               "--path-output", str(book), "--builder", "html"]
    if fresh:
        command.append("--all")
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1800)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(log_path, (result.stdout + "\n" + result.stderr).encode())
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {result.returncode}); see {log_path}.")
    return result


@functools.lru_cache(maxsize=None)
def built_site(root: Path = REPO_ROOT) -> Path:
    """The built HTML folder: built once per process, or taken as is when ``IADTUTOR_BOOK_BUILT=1``."""
    _, html_dir, log_path = book_dirs(root)
    if os.environ.get("IADTUTOR_BOOK_BUILT") == "1":
        if not (html_dir / "index.html").is_file() or not log_path.is_file():
            raise FileNotFoundError(f"IADTUTOR_BOOK_BUILT=1 but {html_dir} or {log_path} is missing; "
                                    "run `python -m iadtutor.tools.book build` first.")
    else:
        build(root)
    return html_dir


# ---------------------------------------------------------------------------------------------- check
def log_problems(log_text: str) -> list[str]:
    """Warnings and errors in a jupyter-book build log, less the ones listed as harmless."""
    problems = []
    log_text = re.sub(r"\x1b\[[0-9;]*m", "", log_text)  # colour codes would hide the words below
    for line in log_text.splitlines():
        if not re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b", line):
            continue
        if any(re.search(pattern, line) for pattern, _ in HARMLESS_LOG_LINES):
            continue
        problems.append(line.strip())
    return problems


def html_problems(page: Path) -> list[str]:
    """Tracebacks, error outputs and error/warning messages on stderr in one built page."""
    text = page.read_text(encoding="utf-8", errors="replace")
    problems = [f"{page.name}: {what}" for pattern, what in HTML_ERROR_PATTERNS if pattern.search(text)]
    if any(OUTPUT_ERROR.search(output) for output in CELL_OUTPUT.findall(text)):
        problems.append(f"{page.name}: an import, name or file error in a cell output")
    for block in STDERR_BLOCK.findall(text):
        message = html.unescape(re.sub(r"<[^>]+>", "", block)).strip()
        if STDERR_PROBLEM.search(message):
            problems.append(f"{page.name}: stderr output: {message[:200]!r}")
    return problems


# The mime types myst-nb shows in HTML (myst_nb.core.render.base_render_priority()["html"]).
BOOK_MIME_TYPES = ("application/vnd.jupyter.widget-view+json", "application/javascript", "text/html",
                   "image/svg+xml", "image/png", "image/gif", "image/jpeg", "text/markdown", "text/latex",
                   "text/plain")
PLOTLY_MIME_TYPE = "application/vnd.plotly.v1+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
REMOTE_SCRIPT = re.compile(r"""<script[^>]*\bsrc\s*=\s*["']?(https?:)?//""", re.I)


def notebook_problems(path: Path) -> list[str]:
    """Outputs of a committed notebook that the offline book would drop or fetch from elsewhere.

    Every code cell must have been executed; each display output needs a mime type the book shows;
    a plotly figure needs, beside its plotly
    JSON (drawn by JupyterLab), a ``text/html`` that calls ``Plotly.newPlot`` without loading plotly.js
    or MathJax from anywhere (the renderer contract of ``iadtutor.viz``); widgets need their saved state.
    """
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    problems, has_widget_view = [], False
    for index, cell in enumerate(notebook.cells):
        where = f"{path.name} cell {index}"
        if cell.cell_type == "code" and cell.source.strip() and cell.get("execution_count") is None:
            problems.append(f"{where}: not executed (the book shows committed outputs; nbval skips it)")
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{where}: error output {output.get('ename')}: {output.get('evalue')}")
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = output.get("data", {})
            has_widget_view |= "application/vnd.jupyter.widget-view+json" in data
            if not any(mime in data for mime in BOOK_MIME_TYPES):
                problems.append(f"{where}: no output mime type the book shows (has {sorted(data)})")
            page_html = data.get("text/html", "")
            page_html = "".join(page_html) if isinstance(page_html, list) else page_html
            if PLOTLY_MIME_TYPE in data and "Plotly.newPlot" not in page_html:
                problems.append(f"{where}: plotly figure without the text/html of iadtutor.viz's renderer")
            if REMOTE_SCRIPT.search(page_html):
                problems.append(f"{where}: text/html loads a script from another machine")
            if "plotly.js v" in page_html[:100_000] or len(page_html) > 2_000_000:
                problems.append(f"{where}: text/html embeds plotly.js (use include_plotlyjs=False)")
    if has_widget_view and WIDGET_STATE not in notebook.metadata.get("widgets", {}):
        problems.append(f"{path.name}: widget outputs but no saved widget state in the notebook metadata")
    return problems


class _ResourceFinder(html.parser.HTMLParser):
    """Collects the URLs a page loads by itself: scripts, stylesheets, icons, images, frames, media."""

    LOADING_ATTRIBUTES = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src",
                          "audio": "src", "embed": "src", "link": "href"}

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and not set((attrs.get("rel") or "").split()) & {"stylesheet", "icon", "preload",
                                                                          "modulepreload", "prefetch"}:
            return  # e.g. rel="canonical" or "next" only names a page, nothing is fetched
        url = attrs.get(self.LOADING_ATTRIBUTES.get(tag, ""))
        if url:
            self.urls.append(url)


def remote_resources(page: Path) -> list[str]:
    """URLs of other machines that a built page would load (links to click are not counted)."""
    finder = _ResourceFinder()
    finder.feed(page.read_text(encoding="utf-8", errors="replace"))
    return [url for url in finder.urls if re.match(r"(https?:)?//", url)]


def check(root: Path = REPO_ROOT) -> list[str]:
    """Everything wrong with the built book: log warnings, missing pages, failed cells. Empty when fine."""
    _, html_dir, log_path = book_dirs(root)
    if not log_path.is_file():
        return [f"{log_path} not found: build the book first."]
    problems = log_problems(log_path.read_text(encoding="utf-8", errors="replace"))
    problems += [f"missing page {page}" for page in expected_pages(root) if not (html_dir / page).is_file()]
    for notebook in chapter_notebooks(root):
        problems += notebook_problems(notebook)
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" not in page.parts:
            problems += html_problems(page)
            problems += [f"{page.name}: loads {url}" for url in remote_resources(page)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iadtutor.tools.book", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["assets", "build", "check"])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "assets":
            print(f"assets in {vendor_assets(args.root)}")
            return 0
        if args.command == "build":
            build(args.root)
            print(f"built {book_dirs(args.root)[1] / 'index.html'}")
        problems = check(args.root)
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem, file=sys.stderr)
    print(json.dumps({"problems": len(problems)}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
