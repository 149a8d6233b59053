# `make dev` runs the whole system on embedded defaults; `make test` runs the whole suite.
# Both set themselves up: a virtualenv in .venv with the pinned dependencies (constraints.txt).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup dev test lint test-faults test-fuzz test-dev bench lock clean

$(INSTALLED): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed (python3.11+ on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

setup: $(INSTALLED)

dev: setup
	$(BIN)/python dev.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

test-faults: setup
	$(BIN)/pytest -m faults

# `make dev` from a clean clone of HEAD, end to end (needs the dev ports free).
test-dev: setup
	$(BIN)/pytest -m dev_stack

# The property-based tests with many more examples than make test gives them.
test-fuzz: setup
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -m properties

bench: setup
	$(BIN)/python -m bench

# Re-pin after changing dependencies in pyproject.toml.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
