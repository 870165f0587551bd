# One command everywhere: people, pre-commit and CI run these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: check all install run test lint format bench schema clean
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

clean:
	rm -rf $(VENV) .reconciler .pytest_cache .mypy_cache .ruff_cache
