# realtime-ai-stack: `make dev` runs everything locally, `make test` passes every test.
# Both install what is missing first (a venv under .venv, and Debian packages for tests).

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: dev test lint typecheck fmt lock bench bench-stream bench-workers bench-dynamodb bench-rooms bench-voice synth system-deps clean help

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

test: $(STAMP) system-deps node-clients lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything under load, in one run; each part prints a table and writes bench/results/:
#   bench-stream    one node, SSE and WebSocket per level, the floor relay (bytes only: what
#                   any asyncio relay costs per token) and its parsing variant (what a relay
#                   that parses and re-renders each token costs on a push path), idle memory (9,000 SSE streams: with
#                   their upstream connections 18,000 sockets, under the 20,000 open files a
#                   process may have here; 10,000 WebSockets), stream starts (stream_bench.*);
#                   BENCH_ARGS="--quick" for a smoke run, or e.g. "--levels 1000 --idle 50"
#   bench-dynamodb  the DynamoDB store (moto's server): 100 and 500 streams as one user and
#                   as many users (stream_bench-dynamodb.*)
#   bench-workers   the same node with WORKERS=2 (two processes behind one port), SSE streams
#                   created and read on one connection (stream_bench-workers2.*)
#   bench-rooms     room fan-out, presence and typing across two nodes (room_bench.*)
#   bench-voice     the voice relay and the local stand-in (voice_bench.*)
bench: bench-stream bench-workers bench-dynamodb bench-rooms bench-voice

bench-stream: $(STAMP)
	$(PY) -m bench.stream_bench --transports both --floor --floor-parse --idle 9000 --idle-ws 10000 --starts 2000 $(BENCH_ARGS)

bench-workers: $(STAMP)
	$(PY) -m bench.stream_bench --workers 2 --levels 500,1000,1500 --idle 0

bench-dynamodb: $(STAMP)
	$(PY) -m bench.stream_bench --store dynamodb --users both --levels 100,500 --idle 0

bench-rooms: $(STAMP) system-deps
	$(PY) -m bench.room_bench

# Voice: relay added latency per audio frame (100 sessions), node CPU per session, and the
# local stand-in's speech_stopped -> first audio delta (voice_bench.*); VOICE_BENCH_ARGS="--quick".
bench-voice: $(STAMP) system-deps
	$(PY) -m bench.voice_bench $(VOICE_BENCH_ARGS)

lock: $(STAMP)
	$(UV) pip compile -q pyproject.toml --extra dev --extra infra --extra voice --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) cdk.out .mypy_cache .ruff_cache .pytest_cache test-artifacts

-include mk/*.mk
