# pim-hub developer commands; `make help` lists them.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The tested dependency set; `make lock` refreshes it after a change to pyproject.toml.
LOCK := requirements/dev.lock

.DEFAULT_GOAL := help
.PHONY: help install demo test test-unit test-integration test-scale fuzz lint fmt bench up lock smoke-install screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev and local extras (locked)

demo: $(STAMP) ## run the main job on embedded defaults (broker, PostgreSQL, sandboxes)
	$(BIN)/hub demo

test: $(STAMP) ## run every test (starts its own broker; uses or starts PostgreSQL)
	sh infra/prometheus/ensure-prometheus.sh
	sh infra/chromium/ensure-chromium.sh >/dev/null
	$(BIN)/pytest -q -n $${PYTEST_WORKERS:-2} --dist loadfile --durations=25

test-unit: $(STAMP) ## unit tests only (no broker, no database)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) ## integration tests through the real broker and PostgreSQL
	sh infra/prometheus/ensure-prometheus.sh
	sh infra/chromium/ensure-chromium.sh >/dev/null
	$(BIN)/pytest -q tests/integration

test-scale: $(STAMP) ## the group scale test (kills a mutator and a dispatcher mid-stream)
	$(BIN)/pytest -q tests/integration/test_scale.py

fuzz: $(STAMP) ## fuzz the webhook receiver at length (make test runs a short round)
	HUB_FUZZ_EXAMPLES=$${HUB_FUZZ_EXAMPLES:-20000} $(BIN)/pytest -q -p no:logging tests/unit/ingest/test_web_fuzz.py

lint: $(STAMP) ## ruff, mypy, every import contract and the Avro schemas' compatibility
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	HUB_LOG_LEVEL=ERROR $(BIN)/hub schemas check --local

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## run the benchmarks and rewrite docs/benchmarks.md
	$(BIN)/python -m bench

up: $(STAMP) ## start an embedded broker and PostgreSQL, print their addresses (Ctrl-C stops them)
	$(BIN)/hub up

lock: $(STAMP) ## re-resolve requirements/*.lock after a change to pyproject.toml (keeps pins)
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --universal --extra console --extra rocksdb --extra otel --no-header --annotation-style line -q -o requirements/runtime.lock
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --universal --extra dev --no-header --annotation-style line -q -o requirements/dev.lock

screenshots: $(STAMP) ## run the console's browser test and keep its screenshots in docs/console
	sh infra/chromium/ensure-chromium.sh >/dev/null
	CONSOLE_SCREENSHOTS_DIR=docs/console $(BIN)/pytest -q tests/integration/test_console_browser.py

smoke-install: $(STAMP) ## build the wheel, install it without extras in a fresh venv, run every --help and `hub db migrate`
	$(BIN)/python -m infra.smoke_install

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .grimp_cache build dist
