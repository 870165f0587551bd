# One command everywhere: people, pre-commit and CI run these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: check all install run test lint format bench schema dist clean
.DEFAULT_GOAL := check

# `make` alone: what CI runs, lint first because it fails fastest.
check: lint test

all: check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/reconcile up --tasks-dir tasks.d

test: install
	$(BIN)/python -m pytest tests -q --durations=15

lint: install
	$(BIN)/ruff check reconciler tests benchmarks
	$(BIN)/ruff format --check reconciler tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix reconciler tests benchmarks
	$(BIN)/ruff format reconciler tests benchmarks

bench: install
	$(BIN)/python -m benchmarks

schema: install
	$(BIN)/reconcile schema > schemas/task.schema.json
	$(BIN)/reconcile schema --document defaults > schemas/defaults.schema.json
	$(BIN)/reconcile schema --document calendar > schemas/calendar.schema.json

# The sdist and the wheel in dist/; then the wheel is installed into a fresh virtualenv
# (its dependencies from the package index) and `reconcile` is run from there.
dist: install
	rm -rf dist build
	$(BIN)/python -m build --outdir dist .
	$(PYTHON) -m venv build/wheel-check
	build/wheel-check/bin/python -m pip install --quiet dist/*.whl
	cd build && wheel-check/bin/reconcile --help >/dev/null
	cd build && wheel-check/bin/reconcile validate ../tasks.d
	cd build && wheel-check/bin/reconcile db upgrade --database-url sqlite:///wheel-check/state.db
	cd build && wheel-check/bin/python -c "from importlib.resources import files; \
	  assert files('reconciler.web').joinpath('static/index.html').is_file()"
	@echo built: dist/*

clean:
	rm -rf $(VENV) .reconciler .pytest_cache .mypy_cache .ruff_cache dist build
