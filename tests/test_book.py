"""The course website: the Jupyter Book build is clean, every chapter is there, no page shows an error or
loads anything from another machine, and the notebooks' outputs are ones the book can show.

The book is built once per test session (``python -m iadtutor.tools.book build``, about a minute), or taken
as it is from ``book/_build`` when ``IADTUTOR_BOOK_BUILT=1`` (e.g. right after ``make book``).
The checkers themselves are tested first, on small made-up inputs, so that a check that can never fail
does not go unnoticed.
"""

from __future__ import annotations

import base64
import re

import nbformat
import pytest

from iadtutor.tools import book, notebooks

CHAPTERS = book.chapter_notebooks()


# ------------------------------------------------------------------ the checkers catch what they should
def test_log_problems_sees_coloured_warnings_and_errors():
    log = ("\x1b[01mreading sources... \x1b[39;49;00m[100%]\n"
           "\x1b[91m/repo/notebooks/01_x.ipynb:3: WARNING: image file not readable: a.png\x1b[39;49;00m\n"
           "book/intro.md:12: ERROR: Unknown directive type: 'nonsense'.\n"
           "build succeeded.\n")
    problems = book.log_problems(log)
    assert len(problems) == 2
    assert problems[0].startswith("/repo/notebooks/01_x.ipynb:3: WARNING")
    assert book.log_problems("build succeeded.\nThe HTML pages are in book/_build/html.\n") == []


def test_html_problems_sees_tracebacks_errors_and_stderr_warnings(tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<div class="output traceback highlight-ipythontb"><pre>Traceback (most recent call last)'
                    '\nModuleNotFoundError: No module named &#39;foo&#39;</pre></div>')
    found = book.html_problems(page)
    assert any("traceback" in p for p in found) and any("error output" in p for p in found)

    page.write_text('<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight"><pre>'
                    '<span></span>/x.py:3: UserWarning: careful\n</pre></div>\n</div>')
    assert len(book.html_problems(page)) == 1

    page.write_text('<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight"><pre>'
                    '<span></span>100%|##########| 10/10 [00:01&lt;00:00]\n</pre></div>\n</div>')
    assert book.html_problems(page) == []  # a progress bar is not an error

    prose = '<section><p>A missing file raises <code>FileNotFoundError</code> naming it.</p>'
    output = '<div class="cell_output docutils container"><pre>ModuleNotFoundError: no iadtutor</pre></div>'
    page.write_text(prose + "</section>")
    assert book.html_problems(page) == []  # prose may name an exception
    page.write_text(prose + output + "</section>")
    assert len(book.html_problems(page)) == 1


def test_remote_resources_counts_loads_not_links(tmp_path):
    page = tmp_path / "page.html"
    page.write_text('<script src="https://cdn.example.org/plotly.js"></script>'
                    '<link rel="stylesheet" href="//fonts.example.org/a.css">'
                    '<link rel="canonical" href="https://example.org/page.html">'
                    '<a href="https://arxiv.org/abs/2509.17670">paper</a>'
                    '<script src="../_static/vendor/plotly.min.js"></script><img src="../_images/a.png">')
    assert book.remote_resources(page) == ["https://cdn.example.org/plotly.js", "//fonts.example.org/a.css"]


def _notebook_with(outputs, widget_state=False):
    cell = nbformat.v4.new_code_cell("fig", execution_count=1)
    cell.outputs = outputs
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), cell])
    if widget_state:
        notebook.metadata["widgets"] = {book.WIDGET_STATE: {"state": {}, "version_major": 2, "version_minor": 0}}
    return notebook


@pytest.mark.parametrize("data, widget_state, expected", [
    ({book.PLOTLY_MIME_TYPE: {"data": []}, "image/png": "iVBORw0KGgo="}, False, None),
    ({book.PLOTLY_MIME_TYPE: {"data": []}}, False, "no output mime type"),
    ({book.PLOTLY_MIME_TYPE: {"data": []}, "text/plain": "Figure()"}, False, "not JSON + PNG"),
    ({book.PLOTLY_MIME_TYPE: {"data": []}, "image/png": "iVBORw0KGgo=",
      "text/html": '<div id="a"></div><script>Plotly.newPlot("a")</script>'}, False, "not JSON + PNG"),
    ({"text/html": '<script src="https://cdn.plot.ly/plotly-3.1.0.min.js"></script>'}, False, "another machine"),
    ({"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "IntSlider()"}, False,
     "no saved widget state"),
    ({"application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "IntSlider()"}, True, None),
])
def test_notebook_problems_enforce_the_output_contract(tmp_path, data, widget_state, expected):
    path = tmp_path / "01_made_up.ipynb"
    nbformat.write(_notebook_with([nbformat.v4.new_output("display_data", data=data)], widget_state), path)
    problems = book.notebook_problems(path)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in problem for problem in problems), problems


def test_notebook_problems_report_cells_never_executed(tmp_path):
    path = tmp_path / "03_made_up.ipynb"
    notebook = _notebook_with([])
    notebook.cells[1].execution_count = None
    nbformat.write(notebook, path)
    assert book.notebook_problems(path) == ["03_made_up.ipynb cell 1: not executed (the book shows committed "
                                            "outputs; nbval skips it)"]


def test_notebook_problems_report_error_outputs(tmp_path):
    path = tmp_path / "02_made_up.ipynb"
    error = nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["ValueError: bad"])
    nbformat.write(_notebook_with([error]), path)
    assert book.notebook_problems(path) == ["02_made_up.ipynb cell 1: error output ValueError: bad"]


# ------------------------------------------------ figures: JSON + PNG in the notebooks, interactive in the book
FIGURE = {"data": [{"type": "scatter", "y": [1, 3, 2]}], "layout": {"height": 300}, "config": {"displaylogo": False}}


def _notebook_with_figures():
    """A figure as the old renderer stored it (JSON + text/html), one as the renderer gives it now (JSON only), one
    in a FigureApp's Output state, papermill's timestamps."""
    old = nbformat.v4.new_output("display_data", data={book.PLOTLY_MIME_TYPE: FIGURE, "text/html": "<div>old</div>"})
    fresh = nbformat.v4.new_output("display_data", data={book.PLOTLY_MIME_TYPE: FIGURE})
    notebook = _notebook_with([old, fresh], widget_state=True)
    notebook.metadata["widgets"][book.WIDGET_STATE]["state"]["m"] = {"model_name": "OutputModel", "state": {
        "outputs": [{"output_type": "display_data", "data": {book.PLOTLY_MIME_TYPE: FIGURE}, "metadata": {}}]}}
    notebook.metadata["papermill"] = {"duration": 3.5, "start_time": "2026-12-01T10:00"}
    notebook.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-12-01T10:00"}
    return notebook


def test_clean_gives_every_figure_json_and_png_without_html_and_is_idempotent(tmp_path):
    drawn = []

    def draw(figures):  # stands in for kaleido: one call for the whole run
        drawn.append(list(figures))
        return [b"\x89PNG fake %d" % i for i in range(len(figures))]

    notebook = _notebook_with_figures()
    notebooks.clean_notebooks([notebook], draw=draw)
    figures = notebooks.plotly_outputs(notebook)
    assert len(figures) == 3 and drawn == [[FIGURE] * 3]
    assert all(set(data) == {book.PLOTLY_MIME_TYPE, "image/png"} and data[book.PLOTLY_MIME_TYPE] == FIGURE
               for data in figures)
    assert [base64.b64decode(data["image/png"]) for data in figures] == [b"\x89PNG fake %d" % i for i in range(3)]
    assert "duration" not in notebook.metadata.papermill and "execution" not in notebook.cells[1].metadata
    path = tmp_path / "05_made_up.ipynb"
    nbformat.write(notebook, path)
    assert book.notebook_problems(path) == []

    text = nbformat.writes(notebook)
    notebooks.clean_notebooks([notebook], draw=draw)
    assert nbformat.writes(notebook) == text and drawn[1:] == [[]]  # a clean notebook: nothing to draw, no change
    path.write_text(text + "\n")
    before = path.stat().st_mtime_ns
    notebooks.clean_files([path])  # nothing to draw: no browser started
    assert path.read_text() == text + "\n" and path.stat().st_mtime_ns == before  # not even rewritten


def test_figure_html_draws_with_the_page_plotly_and_loads_nothing():
    html = book.figure_html(FIGURE, 1)
    assert "Plotly.newPlot" in html and 'class="plotly-graph-div"' in html and '"displaylogo": false' in html
    assert "plotly.js v" not in html and len(html) < 200_000  # plotly.js itself is ~4.6 MB
    assert not re.search(r"<script[^>]*\bsrc=", html), "a script is loaded from a file or CDN"
    assert "cdn" not in html.lower() and "mathjax" not in html.lower()
    assert "<html" not in html.lower()  # a fragment, not a full page
    first, second = (re.search(r'id="([^"]+)"', book.figure_html(FIGURE, n)).group(1) for n in (1, 2))
    assert first != second and first.rsplit("-", 1)[0] == second.rsplit("-", 1)[0]  # same figure, same stem
    assert book.figure_html(FIGURE, 1) == html  # a rebuild gives the same page


def test_read_chapter_makes_every_figure_interactive():
    notebook = _notebook_with_figures()
    notebooks.clean_notebooks([notebook], draw=lambda figures: [b"png"] * len(figures))
    read = book.read_chapter(nbformat.writes(notebook))
    figures = notebooks.plotly_outputs(read)
    assert [data["text/html"] for data in figures] == [book.figure_html(FIGURE, n) for n in (1, 2, 3)]
    assert all(set(data) == {book.PLOTLY_MIME_TYPE, "text/html"} for data in figures)  # no static image


def test_page_figure_problems_count_the_interactive_figures(tmp_path):
    path = tmp_path / "05_made_up.ipynb"
    nbformat.write(_notebook_with_figures(), path)
    page = tmp_path / "05_made_up.html"
    page.write_text("".join(book.figure_html(FIGURE, n) for n in (1, 2, 3)))
    assert book.page_figure_problems(path, page) == []
    page.write_text(book.figure_html(FIGURE, 1) + '<img src="data:image/png;base64,iVBO">' * 2)
    assert book.page_figure_problems(path, page) == ["05_made_up.html: 1 interactive plotly figures, expected 3"]


# --------------------------------------------------------------------------------- the real notebooks
def test_the_course_has_chapters():
    assert CHAPTERS, "no notebooks/0*.ipynb: the book would have no chapters"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=[nb.name for nb in CHAPTERS])
def test_notebook_outputs_are_ones_the_book_shows(notebook):
    problems = book.notebook_problems(notebook)
    assert not problems, "\n".join(problems)
    first = nbformat.read(notebook, as_version=4).cells[0]
    assert first.cell_type == "markdown" and re.match(r"#\s+\S", first.source), \
        f"{notebook.name} must open with a '# Title' markdown cell (the chapter's title in the book)"


# ---------------------------------------------------------------------------------------- the build
@pytest.fixture(scope="module")
def site():
    return book.built_site()


@pytest.mark.book
@pytest.mark.slow
def test_build_log_has_no_warnings(site):
    _, _, log_path = book.book_dirs()
    problems = book.log_problems(log_path.read_text(encoding="utf-8", errors="replace"))
    assert not problems, f"warnings in {log_path}:\n" + "\n".join(problems)


@pytest.mark.book
@pytest.mark.slow
def test_every_page_and_the_assets_exist(site):
    missing = [page for page in book.expected_pages() if not (site / page).is_file()]
    assert not missing, f"pages missing from {site}: {missing}"
    for asset in ("vendor/plotly.min.js", "vendor/require.js", "vendor/html-manager/embed-amd.js",
                  "vendor/mathjax/tex-mml-chtml.js", "require_paths.js", "mathjax2_shim.js"):
        assert (site / "_static" / asset).is_file(), f"_static/{asset} missing from the built site"


@pytest.mark.book
@pytest.mark.slow
def test_chapters_are_in_the_sidebar_in_file_order(site):
    intro = (site / "book" / "intro.html").read_text(encoding="utf-8")
    linked = re.findall(r'href="\.\./notebooks/(0[^"#/]*)\.html"', intro)
    in_order = list(dict.fromkeys(linked))
    assert in_order == [nb.stem for nb in CHAPTERS]


@pytest.mark.book
@pytest.mark.slow
@pytest.mark.parametrize("notebook", CHAPTERS, ids=[nb.name for nb in CHAPTERS])
def test_chapter_page_has_every_figure_interactive(site, notebook):
    assert not book.page_figure_problems(notebook, site / "notebooks" / f"{notebook.stem}.html")


@pytest.mark.book
@pytest.mark.slow
def test_no_page_shows_an_error_or_loads_from_another_machine(site):
    problems = []
    for page in sorted(site.rglob("*.html")):
        if "_static" not in page.parts:
            problems += book.html_problems(page)
            problems += [f"{page.name}: loads {url}" for url in book.remote_resources(page)]
    assert not problems, "\n".join(problems)
