# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck postgres unit bench docs clean

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

unit: $(STAMP)
	$(BIN)/pytest -q

# The logbook's tests run on a real, throwaway PostgreSQL server (pendriver/testing/postgres.py).
# This finds its binaries, or installs Debian's postgresql package when CI=true or
# PENDRIVER_INSTALL_POSTGRES=1 (as root), and starts and stops it once: a machine that cannot
# run it is told so in one line before the suite starts.
postgres: $(STAMP)
	$(BIN)/python -m pendriver.testing.postgres

# mypy (one core, about 25 s from a cold cache) runs beside the suite, which leaves the other
# core mostly idle: on the 2-core machines that keeps `make test` inside its five minutes.
# Either failing fails the target; make waits for both.
test: lint postgres
	$(MAKE) --no-print-directory -j2 typecheck unit

bench: $(STAMP)
	$(BIN)/python tools/bench_protocol.py

docs: $(STAMP)
	$(BIN)/python tools/gen_protocol.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
