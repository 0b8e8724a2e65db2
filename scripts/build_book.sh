#!/usr/bin/env bash
# Build the course website into book/_build/html from the committed notebooks (nothing is executed; each
# plotly figure, committed as JSON + a static PNG, is drawn interactively from its JSON: book.read_chapter),
# then check it: build warnings, missing chapters, error outputs, anything loaded from another machine.
# The first run fetches three pinned npm tarballs (require.js, the ipywidgets HTML manager, MathJax)
# into build/npm-cache; later runs need no network.  Exit status 1 when the check finds a problem.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m iadtutor.tools.book build "$@"
