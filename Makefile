# Two commands for a fresh machine: `make serve` and `make test` (see README).
# Installs are skipped when pyproject.toml has not changed since the last one.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# Peers (bioio) live in their own venv: they must never change the versions our tests run on.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-peers
BENCH_DATA ?= $(abspath ..)/zstack-bench-data
BENCH_MAKE_DATA ?= $(abspath ..)/shared/bench/make_data.py

.PHONY: install serve test lint typecheck pytest bench format clean browser-deps fuzz mutate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/zstack serve

# Installs Debian's chromium when missing; under CI=true failing to is an error, not a skip.
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

# Property-based fuzzing of detection and metadata parsing for FUZZ_SECONDS (random examples;
# `make test` runs a short derandomised pass of the same properties).
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m pytest tests/fuzz -p no:xdist -p no:cacheprovider -q --timeout=0

# Mutation testing (mutmut), module by module with each module's own tests and a time
# budget (scripts/mutate.toml); niced, one worker. MUTATE_MODULES="batch/walk.py" for one.
MUTATE_BUDGET ?= 600
MUTATE_MODULES ?=
mutate: $(STAMP)
	nice -n 10 $(BIN)/python scripts/mutate.py --budget $(MUTATE_BUDGET) $(MUTATE_MODULES)

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

$(BENCH_VENV)/bin/python:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip

$(BENCH_STAMP): bench/requirements-peers.txt | $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/requirements-peers.txt
	touch $@

# Generates missing files of $(BENCH_DATA) (make_data.py --only), then runs every record.
bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python bench/run.py --data $(BENCH_DATA) --make-data $(BENCH_MAKE_DATA) \
		--peer-python $(BENCH_VENV)/bin/python

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
