# ZeroGEX developer commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: run test lint ui live bench clean clean-data install

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

# The streaming engine on the simulated market: the latest session replayed at 10x from a minute before its open
# (levels every 5 s, a snapshot every 30 s); no server, no network. Ctrl-C stops it.
live: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/zerogex stream --at recent --speed 10

lint: $(STAMP)
	$(BIN)/ruff check zerogex_pipeline zerogex_pipeline_tests benchmarks
	$(BIN)/mypy zerogex_pipeline benchmarks

# The Dagster UI and daemon (after `zerogex migrate`: store migrations, and partition status of a store made before
# the expiration-slot partitions), with the stream engine and the live screen beside them (zerogex dashboard on
# http://127.0.0.1:8050; the engine's log: data/stream.log); both stop with dagster dev. The engine follows the
# wall clock: it captures today's session when the market is open and waits otherwise. `make ui REPLAY=recent`
# replays the latest session at REPLAY_SPEED (10x) through every process instead (one shared ZEROGEX_CLOCK), so the
# capture-driven refresh, the capture check and the screens move with it.
REPLAY ?=
REPLAY_SPEED ?= 10
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	mkdir -p data
	$(BIN)/zerogex migrate
	if [ -n "$(REPLAY)" ]; then \
	    export ZEROGEX_CLOCK=$$($(BIN)/zerogex stream --at $(REPLAY) --speed $(REPLAY_SPEED) --print-clock); fi; \
	$(BIN)/zerogex stream > data/stream.log 2>&1 & stream=$$!; \
	$(BIN)/zerogex dashboard & dashboard=$$!; \
	trap 'kill $$stream $$dashboard 2>/dev/null; wait $$dashboard' EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean-data:
	rm -rf data

clean: clean-data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
