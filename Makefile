# omnistream — the two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv lock demo test promtool lint typecheck unit integration chaos kafka-up kafka-down kafka-status bench clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)  ## create the virtualenv and install omnistream with its dev tools (versions from constraints.txt)

lock: $(STAMP)  ## after a dependency change: rewrite constraints.txt and requirements.lock from the virtualenv
	$(BIN)/python deploy/lock.py

demo: $(STAMP)  ## run the main job end to end on a local broker (fetches Kafka on first use)
	$(BIN)/omnistream demo

test: lint typecheck  ## the whole suite: lint, types, unit and integration tests (starts the local broker)
	$(BIN)/pytest

unit: $(STAMP)  ## unit tests only (no broker)
	$(BIN)/pytest tests/unit

integration: $(STAMP)  ## integration tests against the real local broker
	$(BIN)/pytest tests/integration

chaos: $(STAMP)  ## full-size chaos run (>= 100k messages; kills, a broker restart, scale up/down) against a clean run
	CHAOS_SIZE=full $(BIN)/pytest tests/integration/test_event_time.py -k chaos -s -p no:logging

promtool:  ## check the Prometheus rules and config, run the rule unit tests (Debian package `prometheus`)
	cd deploy/prometheus && promtool check rules rules/*.yml && promtool check config prometheus.yml \
	  && promtool test rules tests/*.yml

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check pipeline schemas agents sinks tests

typecheck: $(STAMP)  ## mypy --strict on the packages
	$(BIN)/mypy

bench: $(STAMP)  ## benchmark: baselines, peers, full pipeline, state at 1M customers; writes bench/RESULTS.md (~30 min)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python -m bench

kafka-up: $(STAMP)  ## start the local single-node KRaft broker and create the topics
	$(BIN)/omnistream kafka up

kafka-down: $(STAMP)  ## stop the local broker
	$(BIN)/omnistream kafka down

kafka-status: $(STAMP)  ## is the local broker running, which topics
	$(BIN)/omnistream kafka status

STATE_DIR := $(or $(OMNISTREAM_STATE_DIR),.omnistream)

clean:  ## stop the local broker, remove local state ($OMNISTREAM_STATE_DIR, default .omnistream); keeps jars and venv
	@if [ -x $(BIN)/omnistream ]; then $(BIN)/omnistream kafka down || true; fi
	@case "$(abspath $(STATE_DIR))" in /|$(HOME)) echo "refusing to remove $(STATE_DIR)"; exit 1;; esac
	rm -rf "$(STATE_DIR)"
