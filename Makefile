# Everything a newcomer needs: `make up` runs the pipeline, `make test` proves it. Both create the
# virtualenv on first use (Python 3.11, 3.12 or 3.13, and make, are the only prerequisites).
#
# PYTHON, when not given: the newest of python3.13, python3.12, python3.11 on PATH that actually runs (a pyenv
# shim of a version that is not selected is on PATH but fails), else python3 if it is one of those versions.
# One venv per version when switching: `make test-fast PYTHON=python3.13 VENV=.venv-3.13`.
SUPPORTED  := python3.13 python3.12 python3.11
VERSION_OK := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in $(SUPPORTED) python3; do $$p -c '$(VERSION_OK)' >/dev/null 2>&1 && { echo $$p; break; }; done)
endif
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up test test-kafka test-fast kafka lint bench soak clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "no supported Python found: none of $(SUPPORTED) (or python3 as one of them) runs." \
	  "Install Python 3.11, 3.12 or 3.13, or name one: make PYTHON=/path/to/python3.x ..."; exit 1; }
	@$(PYTHON) -c '$(VERSION_OK)' >/dev/null 2>&1 || { echo "PYTHON=$(PYTHON) does not run, or is not" \
	  "Python 3.11, 3.12 or 3.13"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "$(VENV): $$($(BIN)/python -V)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# `els up` chooses: `docker compose up --build` when `docker info` succeeds (it passes the ingest secret, kept in
# var/ingest-secret, through the environment), else the embedded broker + ingest + processor.
up: $(STAMP)
	$(BIN)/els up

# Two test processes: the end-to-end tests mostly wait (flushes, timeouts, the outages they stage), so two halve
# the suite's time even on two cores.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2

# The tests that depend on the broker again, on Apache Kafka itself (els/apache_kafka.py: fetched once with Maven
# into ~/.cache/els-kafka, run with Java 17+), plus the three-node cluster faults and SASL/mutual-TLS tests; not
# the tests whose faults are all on Datadog's side (marker datadog_side).
test-kafka: $(STAMP)
	ELS_TEST_BROKER=kafka $(BIN)/python -m pytest

# Apache Kafka in the foreground on free ports (BROKERS=3 for a three-node cluster); Ctrl-C stops it.
kafka: $(STAMP)
	$(BIN)/els kafka --brokers $(or $(BROKERS),1)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not broker and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak

clean:
	rm -rf $(VENV) .venv-3.* var test-artifacts .pytest_cache
