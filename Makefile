# iadtutor — one command for the course, one for the tests (see README.md).
#   make course   set up, execute every notebook on its default parameters, build the book
#   make test     set up, run unit tests, notebook regression (nbval), book and browser checks
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

# One set of CPU kernels on every x86 machine with AVX2 (any from the last decade): torch's own kernels,
# MKL (conditional numerical reproducibility) and oneDNN all take their AVX2 code paths, so that training runs
# (ULSAD, DefectMaker) follow the same arithmetic on every such machine (checked on one AMD machine only). Override from the
# environment to try others (tests/test_notebook_results.py says what then moves; README).
export ATEN_CPU_CAPABILITY ?= avx2
export MKL_CBWR ?= AVX2
export ONEDNN_MAX_CPU_ISA ?= AVX2

.PHONY: all setup lock browser toy course execute book test test-unit test-notebooks test-book bench deviations checkpoints clean

all: course

# Exact versions from requirements.lock (torch/torchvision included); `make lock` refreshes it.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	$(BIN)/python scripts/check_lock.py --installed
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (iadtutor)" > /dev/null
	touch $(STAMP)

setup: $(STAMP)

# Re-resolve pyproject.toml in a throwaway venv and rewrite requirements.lock (then `make execute`).
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

browser:
	bash scripts/install_chromium.sh

toy: setup
	$(BIN)/iadtutor data make-toy --out data/toy --overwrite

# Execute the course in place (outputs are committed), then build the website from them. `clean` gives every plotly
# figure a static PNG (GitHub, nbviewer), drawn by kaleido in Chromium: hence `browser`.
execute: setup toy browser
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  start=$$(date +%s); \
	  PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/papermill -k python3 --cwd notebooks "$$nb" "$$nb.tmp.ipynb" || exit 1; \
	  $(BIN)/python -m iadtutor.tools.notebooks clean "$$nb.tmp.ipynb" || exit 1; mv "$$nb.tmp.ipynb" "$$nb"; \
	  echo "   $$(( $$(date +%s) - start )) s"; \
	done

book: setup
	PATH=$(CURDIR)/$(BIN):$$PATH bash scripts/build_book.sh

course: execute book

NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

test: setup browser
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q tests notebooks $(NBVAL)

test-notebooks: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q notebooks $(NBVAL)

test-unit: setup
	$(BIN)/python -m pytest -q tests -m "not browser and not book and not slow"

# The trainings notebooks 06 and 07 load (committed in checkpoints/; one thread; DefectMaker 20-27 minutes a seed,
# ULSAD 11-12): run after changing a recipe, ULSAD's small preset or the toy data, then `make execute`.
checkpoints: setup toy
	$(BIN)/python -m iadtutor.tools.checkpoints --data data/toy --out checkpoints

# The effects on the toy factory of book/deviations.md (about 9 minutes: one ULSAD training per setting).
deviations: setup toy
	$(BIN)/python book/deviations/measure.py

bench: setup
	$(BIN)/python benchmarks/bench_lwinnn.py

clean:
	rm -rf book/_build data/toy
