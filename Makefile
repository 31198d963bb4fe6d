# realtime-ai-stack: `make dev` runs everything locally, `make test` passes every test.
# Both install what is missing first (a venv under .venv, and Debian packages for tests).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: dev test lint typecheck fmt lock bench synth system-deps clean help

help:
	@echo "make dev | test | lint | typecheck | bench | synth | lock | clean"

$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	@test -x $(UV) || $(VENV)/bin/pip install -q uv==0.13.8
	$(UV) pip install --python $(PY) -q -r requirements.lock
	$(UV) pip install --python $(PY) -q --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

dev: $(STAMP)
	$(PY) -m devstack

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) system-deps lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

# The stream service under load: prints a table, writes bench/results/stream_bench.{md,json,png}.
# BENCH_ARGS="--quick" for a smoke run.
bench: $(STAMP)
	$(PY) -m bench.stream_bench $(BENCH_ARGS)

lock: $(STAMP)
	$(UV) pip compile -q pyproject.toml --extra dev --extra infra --extra voice --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) cdk.out .mypy_cache .ruff_cache .pytest_cache test-artifacts

-include mk/*.mk
