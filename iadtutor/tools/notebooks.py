"""Keep executed notebooks stable and readable everywhere (``make execute`` runs this after papermill)::

    python -m iadtutor.tools.notebooks clean notebooks/01_patch_embeddings.ipynb

papermill stamps times and durations into the notebook and cell metadata, which would make every commit noisy:
they go. nbval needs the outputs *and* the execution counts (it silently skips cells without one), so those stay.
Every plotly figure (in a cell, or saved in a widget's state by ``FigureApp``) keeps its plotly JSON, which
JupyterLab draws, and gains a small static PNG for GitHub and nbviewer (where plotly's JavaScript does not run),
made from the JSON by kaleido in one headless Chromium; a ``text/html`` copy of the figure is dropped (the book
makes its own, :func:`iadtutor.tools.book.read_chapter`). Cleaning a clean notebook changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import nbformat

from iadtutor.files import write_text_atomic

VOLATILE_PAPERMILL_KEYS = ("start_time", "end_time", "duration", "exception", "status")
PLOTLY_MIME_TYPE = "application/vnd.plotly.v1+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PNG_SIZE = (800, 525)  # (width, height) in pixels when the figure's layout sets none; scale 1
PNG_COLOURS = 256  # a palette PNG: about a fifth of kaleido's full-colour one, still sharp


def plotly_outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    """The ``data`` of every output holding a plotly figure, in the cells and then in the outputs saved in widgets'
    state (a ``FigureApp``'s ``Output``), in order (:func:`clean_notebooks`, the book's reader and checks)."""
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    outputs += [output for model in state.values() for output in model.get("state", {}).get("outputs") or []]
    return [output["data"] for output in outputs if PLOTLY_MIME_TYPE in output.get("data", {})]


def figure_pngs(figures: Sequence[dict]) -> list[bytes]:
    """Palette PNGs of plotly figure dicts at their layout's size (else :data:`PNG_SIZE`), drawn by kaleido in one
    headless Chromium (``$IADTUTOR_CHROMIUM``, else the one kaleido finds) (:func:`clean_notebooks`)."""
    if not figures:
        return []
    try:
        import kaleido
        from choreographer.errors import ChromeNotFoundError
    except ImportError:
        raise RuntimeError("kaleido is not installed; it draws the figures' static images: "
                           "pip install -e '.[dev]' (make setup).") from None
    from PIL import Image

    def size(figure: dict) -> dict:
        layout = figure.get("layout", {})
        return dict(width=layout.get("width") or PNG_SIZE[0], height=layout.get("height") or PNG_SIZE[1])

    async def draw_all() -> list[bytes]:
        try:
            browser = kaleido.Kaleido(n=1, mathjax=False, path=os.environ.get("IADTUTOR_CHROMIUM") or None)
        except ChromeNotFoundError:
            raise RuntimeError("no Chromium or Chrome found to draw the figures' static images: run `make browser` "
                               "(scripts/install_chromium.sh) or set IADTUTOR_CHROMIUM to one.") from None
        async with browser:
            return [await browser.calc_fig(figure, opts=dict(format="png", scale=1, **size(figure)))
                    for figure in figures]

    pngs = []
    for png in asyncio.run(draw_all()):
        buffer = io.BytesIO()
        image = Image.open(io.BytesIO(png)).convert("RGB")
        image.quantize(PNG_COLOURS, method=Image.Quantize.FASTOCTREE).save(buffer, format="PNG", optimize=True)
        pngs.append(buffer.getvalue())
    return pngs


def clean_notebooks(notebooks: Sequence[nbformat.NotebookNode],
                    draw: Callable[[Sequence[dict]], list[bytes]] = figure_pngs) -> None:
    """Clean ``notebooks`` in place (module docstring): no timestamps or durations; every plotly figure as its JSON
    plus a PNG, ``draw`` making the missing PNGs of all of them at once (:func:`clean_files`)."""
    figures = []
    for notebook in notebooks:
        papermill = notebook.metadata.get("papermill", {})
        for key in VOLATILE_PAPERMILL_KEYS + ("input_path", "output_path"):
            papermill.pop(key, None)
        for cell in notebook.cells:
            cell.metadata.pop("execution", None)
            if (cell_papermill := cell.metadata.get("papermill")) is not None:
                for key in VOLATILE_PAPERMILL_KEYS:
                    cell_papermill.pop(key, None)
                if not cell_papermill:
                    cell.metadata.pop("papermill")
        figures += plotly_outputs(notebook)
    for data in figures:
        data.pop("text/html", None)
    missing = [data for data in figures if "image/png" not in data]
    for data, png in zip(missing, draw([data[PLOTLY_MIME_TYPE] for data in missing]), strict=True):
        data["image/png"] = base64.b64encode(png).decode()


def clean_files(paths: Sequence[str | Path]) -> None:
    """Clean notebook files in place, atomically, with one browser for all their figures (``make execute``)."""
    texts = [Path(path).read_text(encoding="utf-8") for path in paths]
    notebooks = [nbformat.reads(text, as_version=4) for text in texts]
    clean_notebooks(notebooks)
    for path, text, notebook in zip(paths, texts, notebooks):
        if (cleaned := nbformat.writes(notebook) + "\n") != text:  # a clean notebook is left untouched
            write_text_atomic(path, cleaned)


def clean_file(path: str | Path) -> None:
    """Clean one notebook file in place, atomically (:func:`clean_files`)."""
    clean_files([path])


def main(argv: list[str] | None = None) -> int:
    """``python -m iadtutor.tools.notebooks clean NOTEBOOK ...`` (the Makefile's ``execute`` target)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "clean":
        print("usage: python -m iadtutor.tools.notebooks clean NOTEBOOK [NOTEBOOK ...]", file=sys.stderr)
        return 2
    try:
        clean_files(argv[1:])
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
