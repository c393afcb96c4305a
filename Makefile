# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint system floors floors-adapters
comma := ,

demo: $(VENV)/.installed
	$(BIN)/signoff demo

# Under tools/test_services.py: the Redis and PostgreSQL the tests name if they answer,
# else throwaway ones of the run's own.
test: $(VENV)/.test-installed system lint
	$(BIN)/python tools/test_services.py -- $(BIN)/python -m pytest
ifeq ($(CI),true)
	$(MAKE) floors
endif

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tests/typing

# What the tests drive from Debian: Chromium for the browser tests (Playwright never
# downloads its own), nginx, the load balancer of docs/deploying.md, and the Redis and
# PostgreSQL servers tools/test_services.py starts when none answers.
PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))
system: /usr/bin/chromium /usr/sbin/nginx /usr/bin/redis-server $(if $(PG_INITDB),,postgresql)
/usr/bin/chromium /usr/sbin/nginx /usr/bin/redis-server &:
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium nginx redis-server
.PHONY: postgresql
postgresql:
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q postgresql

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e .
	touch $@

# Every extra, and the tools of the dev group (pyproject.toml's dependency-groups).
$(VENV)/.test-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[all]' --group dev
	touch $@ $(VENV)/.installed

# The smoke suite on the lowest versions pyproject.toml declares for the base and every
# extra (tools/floors.py), in a venv of its own: the floors stay true. CI runs it after
# the suite. The agent frameworks' adapters get a venv of their own (floors-adapters), so
# their runs of the demo's flows are left out here.
FLOORS := .venv-floors
# The demo flows' runs through the adapters, by their ids.
NOT_ADAPTERS := not pydantic-ai and not langgraph and not openai-agents
SMOKE  := tests/unit tests/integration/test_demo_flows.py tests/integration/test_llm.py \
	tests/integration/test_slack.py tests/integration/test_webhooks.py \
	tests/store/test_store_contract.py tests/audit/test_audit_contract.py \
	tests/integration/test_dashboard.py tests/integration/test_cli.py
floors: $(VENV)/.test-installed
	rm -rf $(FLOORS)
	$(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/pip install -q --upgrade pip
	$(BIN)/python tools/floors.py postgres slack llm > $(FLOORS)/constraints.txt
	$(FLOORS)/bin/pip install -q -c $(FLOORS)/constraints.txt -e '.[postgres,slack,llm]' --group test
	$(FLOORS)/bin/python -m pytest -q -p no:cacheprovider $(SMOKE) -k "$(NOT_ADAPTERS)"
	$(MAKE) floors-adapters

# The agent frameworks' adapters on their floors, in a venv of their own: a framework may
# need newer versions of signoff's own dependencies than the base install's floors.
FLOORS_ADAPTERS := .venv-floors-adapters
# postgres too: the tests' own set-up (tests/services.py) uses it.
ADAPTERS := postgres,pydantic-ai,mcp,langgraph,openai-agents
# The demo's flows run through the adapter too. The docs' example is left to the main run:
# it names an OpenAI model, whose client this venv does not hold.
ADAPTER_TESTS := tests/integration/test_adapter_pydantic_ai.py tests/integration/test_demo_flows.py \
	tests/integration/test_adapter_mcp.py tests/integration/test_adapter_langgraph.py \
	tests/integration/test_adapter_openai_agents.py -k "not docs_example"
floors-adapters: $(VENV)/.test-installed
	rm -rf $(FLOORS_ADAPTERS)
	$(PYTHON) -m venv $(FLOORS_ADAPTERS)
	$(FLOORS_ADAPTERS)/bin/pip install -q --upgrade pip
	$(BIN)/python tools/floors.py $(subst $(comma), ,$(ADAPTERS)) > $(FLOORS_ADAPTERS)/constraints.txt
	$(FLOORS_ADAPTERS)/bin/pip install -q -c $(FLOORS_ADAPTERS)/constraints.txt \
		-e '.[$(ADAPTERS)]' --group test
	$(FLOORS_ADAPTERS)/bin/python -m pytest -q -p no:cacheprovider $(ADAPTER_TESTS)

# The load benchmarks and the audit log's CSV export against PostgreSQL's COPY, about ten
# minutes (docs/performance.md): `make bench BENCH_ARGS=--quick` for a small run.
.PHONY: bench
bench: $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

$(VENV)/.bench-installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[all]' --group bench
	touch $@ $(VENV)/.installed
