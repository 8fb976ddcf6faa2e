# Set-up and the two commands of the README. Each target creates or reuses the
# local virtual environment .venv and installs the package into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfp_nice-installed

.PHONY: run test clean

run: $(STAMP)
	$(BIN)/tfp-nice train --out runs/digits --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
