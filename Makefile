# Set-up, the two commands of the README, `make bench`, `make docs` and `make dist`. Each
# target creates or reuses the local virtual environment .venv and installs the package
# (with the extras it needs) into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfp_nice-installed

BENCH_STAMP := $(VENV)/.tfp_nice-bench-installed
BENCH_ARGS ?= --json benchmarks/results.json
DOCS_STAMP := $(VENV)/.tfp_nice-docs-installed
RELEASE_STAMP := $(VENV)/.tfp_nice-release-installed
TYPECHECK_STAMP := $(VENV)/.tfp_nice-typecheck-installed

.PHONY: run test bench docs dist typecheck clean

run: $(STAMP)
	$(BIN)/tfp-nice train --out runs/digits --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# The API reference from the docstrings, built strict (a broken reference fails) into runs/site.
docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

# The type checker over tfp_nice/ (its settings in pyproject.toml).
typecheck: $(TYPECHECK_STAMP)
	$(BIN)/python -m mypy

# The wheel and the sdist in dist/, their metadata checked.
dist: $(RELEASE_STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m twine check --strict dist/*

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $(DOCS_STAMP)

$(TYPECHECK_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[typecheck]"
	touch $(TYPECHECK_STAMP)

$(RELEASE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[release]"
	touch $(RELEASE_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	touch $(BENCH_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache runs/site
