# Two commands for a fresh machine: `make serve` and `make test` (see README).
# Installs are skipped when pyproject.toml has not changed since the last one.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_DATA ?= $(abspath ..)/zstack-bench-data

.PHONY: install serve test lint typecheck pytest bench format clean browser-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/zstack serve

browser-deps:
	@bash scripts/ensure-chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browser-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test: lint typecheck pytest

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/run.py --data $(BENCH_DATA)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
