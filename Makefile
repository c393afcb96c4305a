# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint system

demo: $(VENV)/.installed
	$(BIN)/signoff demo

test: $(VENV)/.test-installed system lint
	$(BIN)/python -m pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# What the tests drive from Debian: Chromium for the browser tests (Playwright never
# downloads its own) and nginx, the load balancer of docs/deploying.md.
system: /usr/bin/chromium /usr/sbin/nginx
/usr/bin/chromium /usr/sbin/nginx &:
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium nginx

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

# The load benchmarks and the audit log's CSV export against PostgreSQL's COPY, about ten
# minutes (docs/performance.md): `make bench BENCH_ARGS=--quick` for a small run.
.PHONY: bench
bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

$(VENV)/.bench-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[bench]'
	touch $@ $(VENV)/.installed
