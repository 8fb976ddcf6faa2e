# Set-up, the two commands of the README and `make bench`. Each target creates or reuses the
# local virtual environment .venv and installs the package into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfp_nice-installed

BENCH_STAMP := $(VENV)/.tfp_nice-bench-installed
BENCH_ARGS ?= --json benchmarks/results.json

.PHONY: run test bench clean

run: $(STAMP)
	$(BIN)/tfp-nice train --out runs/digits --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $(BENCH_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
