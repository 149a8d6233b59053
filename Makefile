# `make dev` runs the whole system on embedded defaults; `make test` runs the whole suite.
# Both set themselves up: a virtualenv in .venv with the pinned dependencies (constraints.txt).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup dev test lint test-faults test-fuzz test-containers bench lock clean

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

# The property-based tests with many more examples than make test gives them.
test-fuzz: setup
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -m properties

# The image built and docker-compose.yml up with podman, upstream images swapped for local
# stand-ins (tests/containers/; cold about 6 CPU-minutes, 19 min wall on a loaded 2-core
# machine: docs/benchmarks.md). On Debian as root it installs what it needs.
CONTAINER_PACKAGES := podman runc uidmap slirp4netns fuse-overlayfs debootstrap
test-containers: setup
	@dpkg -s $(CONTAINER_PACKAGES) >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 $(CONTAINER_PACKAGES); }
	$(BIN)/pytest -m containers -s tests/containers

bench: setup
	$(BIN)/python -m bench

# Re-pin after changing dependencies in pyproject.toml.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
