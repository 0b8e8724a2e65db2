"""Keep executed notebooks stable (``make execute`` runs this after papermill): strip volatile metadata, never
outputs or execution counts::

    python -m iadtutor.tools.notebooks clean notebooks/01_patch_embeddings.ipynb

papermill stamps times and durations into the notebook and cell metadata, which would make every commit noisy.
nbval needs the outputs *and* the execution counts (it silently skips cells without one), so those stay.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

from iadtutor.files import write_text_atomic

VOLATILE_PAPERMILL_KEYS = ("start_time", "end_time", "duration", "exception", "status")


def clean_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove timestamps and durations from ``notebook`` (in place) and return it (:func:`clean_file`)."""
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
    return notebook


def clean_file(path: str | Path) -> None:
    """Clean one notebook file in place, atomically (``make execute``)."""
    notebook = nbformat.read(path, as_version=4)
    write_text_atomic(path, nbformat.writes(clean_notebook(notebook)) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``python -m iadtutor.tools.notebooks clean NOTEBOOK ...`` (the Makefile's ``execute`` target)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "clean":
        print("usage: python -m iadtutor.tools.notebooks clean NOTEBOOK [NOTEBOOK ...]", file=sys.stderr)
        return 2
    for path in argv[1:]:
        clean_file(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
