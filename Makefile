# orgseg — the commands a user types. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.orgseg-installed
PIP := $(BIN)/pip --disable-pip-version-check
export nnUNet_compile ?= f

.PHONY: setup test test-fast demo lint typecheck bench-body bench-chunked clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/cpu.lock requirements/torch-cpu.txt requirements/no-deps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements/torch-cpu.txt
	$(PIP) install -q -c requirements/torch-cpu.txt -r requirements/cpu.lock
	$(PIP) install -q --no-deps -r requirements/no-deps.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

demo: setup
	$(BIN)/orgseg demo -c jobs/demo.yaml

lint: setup
	$(BIN)/ruff check orgseg tests benchmarks

typecheck: setup
	$(BIN)/mypy orgseg/core

bench-chunked: setup
	$(BIN)/python benchmarks/chunked_inference.py

bench-body: setup
	$(BIN)/python benchmarks/body_contour.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache .mypy_cache .ruff_cache
