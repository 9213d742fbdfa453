# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck postgres browser unit bench docs screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pen demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The suite runs on both cores (pytest-xdist); each worker starts its own throwaway
# PostgreSQL server on first use. `PYTEST_WORKERS=0 make unit` runs it in one process.
PYTEST_WORKERS ?= 2

unit: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

# The logbook's tests run on a real, throwaway PostgreSQL server (pendriver/testing/postgres.py).
# This finds its binaries, or installs Debian's postgresql package when CI=true or
# PENDRIVER_INSTALL_POSTGRES=1 (as root), and starts and stops it once: a machine that cannot
# run it is told so in one line before the suite starts.
postgres: $(STAMP)
	$(BIN)/python -m pendriver.testing.postgres

# The workstation's tests run in a real headless Chromium driven by Playwright
# (pendriver/testing/browser.py): Debian's chromium package, as Playwright's own browser download
# is unreachable here. This finds it ($PENDRIVER_CHROMIUM, chromium, chromium-browser,
# /usr/bin/chromium), or installs the package when CI=true or PENDRIVER_INSTALL_CHROMIUM=1 (as
# root), and launches it once: a machine that cannot run it is told so in one line first.
browser: $(STAMP)
	$(BIN)/python -m pendriver.testing.browser

test: lint typecheck postgres browser unit

bench: $(STAMP)
	$(BIN)/python tools/bench_protocol.py

# Pictures of the workstation's pages for the README (docs/screenshots/), from a real browser.
screenshots: $(STAMP) browser
	$(BIN)/python tools/screenshots.py

docs: $(STAMP)
	$(BIN)/python tools/gen_protocol.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
