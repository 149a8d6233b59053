# `make dev` runs the whole system on embedded defaults; `make test` runs the whole suite.
# Both set themselves up: a virtualenv in .venv with the pinned dependencies (constraints.txt).

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup dev test lint alert-rules test-faults test-fuzz test-dev test-browser test-containers chromium bench lock clean

$(INSTALLED): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed (python3.11+ on PATH)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

setup: $(INSTALLED)

dev: setup
	$(BIN)/learning-jobs dev

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two pytest workers (pytest-xdist), each with its own PostgreSQL and Temporal dev server: the
# suite waits on servers and subprocesses as much as it computes (6 min 44 s → 4 min 01 s here).
TEST_WORKERS ?= 2

test: lint alert-rules
	$(BIN)/pytest -n $(TEST_WORKERS)

# The alert rules (deploy/prometheus/): syntax, the config that loads them, their unit tests.
# promtool comes from Debian's prometheus package (installed here if missing; not started).
alert-rules:
	@command -v promtool >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/tests/*.test.yml

test-faults: setup
	$(BIN)/pytest -m faults

# `make dev` from a clean clone of HEAD, end to end (needs the dev ports free).
test-dev: setup chromium
	$(BIN)/pytest -m dev_stack

# The property-based tests with many more examples than make test gives them.
test-fuzz: setup
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -m properties

# Debian's Chromium for the browser tests (CI runs as root on a fresh machine).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# Native EventSource in a real headless Chromium.
test-browser: setup chromium
	$(BIN)/pytest -m browser

# Real runs of every workflow type on a throwaway stack, exported into the replay corpus
# (tests/replay/histories/<time>-<commit>/) that make test replays against the current code.
.PHONY: record-histories
record-histories: setup
	$(BIN)/python -m tests.replay.record

# The image built and docker-compose.yml up with podman, upstream images swapped for local
# stand-ins (tests/containers/; about 5 min cold, 1.5 min with the images it keeps:
# docs/benchmarks.md). On Debian as root it installs what it needs.
CONTAINER_PACKAGES := podman runc uidmap slirp4netns fuse-overlayfs debootstrap
test-containers: setup
	@dpkg -s $(CONTAINER_PACKAGES) >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=300 $(CONTAINER_PACKAGES); }
	$(BIN)/pytest -m containers -s tests/containers

BENCH_INSTALLED := $(VENV)/.installed-bench

$(BENCH_INSTALLED): $(INSTALLED)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	@touch $@

bench: $(BENCH_INSTALLED)
	$(BIN)/python -m bench

# Re-pin after changing dependencies in pyproject.toml.
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
