# Two commands do all set-up: `make run` (dashboard + demo data) and `make test` (whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test setup db lint bench clean api watch

# Re-installs only when pyproject.toml or constraints.txt changed since the last install.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,duckdb,spark,docs]'
	# GrowthBook's stats engine, for the cross-check in tests/stats; --no-deps: it pins pandas<2 but runs on ours.
	$(BIN)/python -m pip install --quiet --no-deps gbstats==0.8.0
	touch $(STAMP)

setup: $(STAMP)

# Migrate to the newest schema, then load the demo data set if the store is empty.
db: setup
	$(BIN)/abcore init
	$(BIN)/abcore demo --if-empty

# The dashboard runs the watcher alongside (stopping rules, snapshots, alerts; `abcore dashboard --no-watch` to turn it off).
run: db
	@echo "Dashboard on http://$(HOST):$(PORT) (another port: make run PORT=8600)"
	$(BIN)/abcore dashboard --host $(HOST) --port $(PORT)

# The HTTP API (FastAPI + uvicorn) on the same store; create a key first: `abcore api-key create NAME --role editor`.
API_PORT ?= 8000
api: db
	$(BIN)/abcore api --host $(HOST) --port $(API_PORT)
# The watcher as a service: stopping rules, snapshots and alerts every WATCH_EVERY seconds.
WATCH_EVERY ?= 300
watch: setup
	$(BIN)/abcore watch --every $(WATCH_EVERY)

# Style and complexity (ruff), then the import contracts of the package layout (pyproject [tool.importlinter]).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The suite, then the docs site built with warnings as errors into a temporary folder (no site/ left behind).
test: setup lint
	$(BIN)/python -m pytest
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir "$$site"; status=$$?; rm -rf "$$site"; exit $$status

bench: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,duckdb,spark,bench]'
	$(BIN)/python -m pytest -m bench -s benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
