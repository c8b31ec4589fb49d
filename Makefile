# Quickstart: `make run` and `make test` work on a fresh clone; both create .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# constraints.txt pins the whole dependency tree to versions that resolve together.
INSTALL := $(PIP) install --disable-pip-version-check -q -c constraints.txt

.PHONY: run test test-quick lint format install install-dev clean-data bench soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(INSTALL) -e ".[spark,viz,deploy]"
	$(BIN)/python -m cltv.java ensure
	$(BIN)/python -m cltv.warm_start
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(INSTALL) -e ".[spark,viz,deploy,dev]"
	@touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/kedro run

lint: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: install-dev
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

# the dashboard test draws in headless Chrome/Chromium: found, or installed where the machine
# can (Debian/Ubuntu as root or with passwordless sudo), or one line saying what to install
test: lint
	@browser=$$(sh tools/ensure-browser.sh) && CLTV_BROWSER="$$browser" $(BIN)/pytest -m "not slow"

# the inner loop: every test that starts no whole `kedro run` and no server (the tests using
# a run fixture are marked whole_run by tests/conftest.py), in about 3 minutes; no lint
test-quick: install-dev
	$(BIN)/pytest -m "not slow and not whole_run"

# 20 runs with failures injected at random (tests marked slow, minutes)
soak: install-dev
	$(BIN)/pytest -m slow

# the project side by side with Spark's floor (../shared/bench/spark_floor.py) and a pandas +
# lifetimes script, on the same generated files; not part of `make test` (minutes to hours;
# ROWS="50000000" for the opt-in 50M run; "sample" is the bundled file). PAIRS=3 runs floor,
# project, pandas script and job three times in turn, takes each ratio within a round and
# prints the median over the rounds
ROWS ?= sample 1000000 10000000
PAIRS ?= 1
bench: install-dev
	$(BIN)/python -m tests.benchmarks.bench --rows $(ROWS) --pairs $(PAIRS)

clean-data:
	find data -mindepth 2 -maxdepth 2 ! -name .gitkeep ! -name 'online_retail_ii_sample.csv*' -exec rm -rf {} +
