# ZeroGEX developer commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: run test lint ui bench clean clean-data install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The local instance takes the repo's dagster.yaml (telemetry off, run queue, pools).
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/zerogex run --row-counts

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check zerogex_pipeline zerogex_pipeline_tests benchmarks
	$(BIN)/mypy zerogex_pipeline benchmarks

# The live screen (zerogex dashboard, http://127.0.0.1:8050) runs beside dagster dev and stops with it.
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/zerogex dashboard & dashboard=$$!; trap 'kill $$dashboard 2>/dev/null; wait $$dashboard' EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean-data:
	rm -rf data

clean: clean-data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
