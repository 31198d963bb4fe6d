"""Upstream time limits and plain completions with real parts: stream-service nodes on
moto's DynamoDB server and an OpenAI-compatible upstream that thinks 2.5 s before its first
token (a reasoning model, scaled down).

- UPSTREAM_FIRST_TOKEN_S, not UPSTREAM_IDLE_S, bounds the wait for the first token, and
  keepalive comments flow meanwhile;
- ``stream: false`` on POST /stream/v1/chat/completions counts against the per-user limit,
  is refused while the node drains, and times out per UPSTREAM_COMPLETE_S with an
  OpenAI-shaped 504 that names the streaming endpoint.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import MODEL, StartNode, auth, create
from tests.integration.stream_service.engine_support import wait_for
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import read_sse

pytestmark = pytest.mark.slow

THINK_S = 2.5


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=THINK_S, interval_s=0.02, default_tokens=20)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def patient(start_node: StartNode) -> ProcessServer:
    """Waits up to 10 s for a first token; 0.5 s of silence between tokens is too long."""
    return start_node(
        NODE_ID="patient",
        UPSTREAM_IDLE_S="0.5",
        UPSTREAM_FIRST_TOKEN_S="10",
        KEEPALIVE_S="1",
        DRAIN_S="1",
    )


@pytest.fixture(scope="module")
def impatient(start_node: StartNode) -> ProcessServer:
    """Gives up on a first token after 1 s and on a plain completion after 1 s; one stream
    per user."""
    return start_node(
        NODE_ID="impatient",
        UPSTREAM_IDLE_S="0.5",
        UPSTREAM_FIRST_TOKEN_S="1",
        UPSTREAM_COMPLETE_S="1",
        MAX_STREAMS_PER_USER="1",
        DRAIN_S="1",
    )


@dataclass
class _Wire:
    """What a client receives, frame by frame, with arrival times."""

    frames: list[tuple[float, str]] = field(default_factory=list)

    def first(self, marker: str) -> float:
        return next(at for at, frame in self.frames if marker in frame)

    def pings_before(self, at: float) -> list[float]:
        return [t for t, frame in self.frames if frame.startswith(":") and t < at]


def _read_wire(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> _Wire:
    wire = _Wire()
    with httpx.Client(timeout=timeout) as client, client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200
        buffer = ""
        for chunk in r.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                wire.frames.append((time.monotonic(), frame))
    return wire


def test_a_slow_first_token_is_waited_for_with_keepalives(
    patient: ProcessServer, upstream: tuple[ScriptedUpstream, ThreadServer], tokens: DevTokens
) -> None:
    app, _ = upstream
    started = time.monotonic()
    created = create(patient, auth(tokens, "thinker"), tokens_out=20).json()
    wire = _read_wire(patient.url + created["events_url"])
    first_delta = wire.first("event: delta")
    assert first_delta - started >= THINK_S - 0.2  # longer than UPSTREAM_IDLE_S, five times
    status = wire.first("event: status")
    assert status - started < THINK_S / 2  # the typing indicator came at once
    # comments flowed while the model thought: KEEPALIVE_S=1, a ping every half of it
    pings = wire.pings_before(first_delta)
    assert len(pings) >= 3, pings
    ends = [frame for _, frame in wire.frames if "event: done" in frame]
    assert len(ends) == 1 and '"finish_reason":"stop"' in ends[0]
    text = "".join(
        json.loads(frame.split("data: ", 1)[1])["text"]
        for _, frame in wire.frames
        if "event: delta" in frame
    )
    assert text == app.expected_text(20)


def test_beyond_the_first_token_limit_the_stream_ends_with_upstream_timeout(
    impatient: ProcessServer, upstream: tuple[ScriptedUpstream, ThreadServer], tokens: DevTokens
) -> None:
    app, _ = upstream
    disconnects = app.stats.disconnects
    started = time.monotonic()
    created = create(impatient, auth(tokens, "too-slow"), tokens_out=20).json()
    result = read_sse(impatient.url + created["events_url"], timeout=15)
    assert [e.event for e in result.events] == ["status", "error"]
    error = result.last().json()
    assert error["code"] == "upstream_timeout" and error["retryable"] is True
    assert "before its first token" in error["message"]
    assert time.monotonic() - started < THINK_S  # stopped at 1 s, before the first token
    wait_for(lambda: app.stats.disconnects > disconnects, 5, "the upstream call to close")


def _complete(node: ProcessServer, headers: dict[str, str], **extra: Any) -> httpx.Response:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "stream": False,
        **extra,
    }
    return httpx.post(
        f"{node.url}/stream/v1/chat/completions", json=body, headers=headers, timeout=30
    )


def test_a_plain_completion_answers_within_its_limit(
    patient: ProcessServer, upstream: tuple[ScriptedUpstream, ThreadServer], tokens: DevTokens
) -> None:
    app, _ = upstream
    response = _complete(patient, auth(tokens, "plain"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == app.expected_text(5)


def test_a_plain_completion_counts_against_the_per_user_limit_and_times_out(
    patient: ProcessServer,
    impatient: ProcessServer,
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    app, _ = upstream
    headers = auth(tokens, "one-at-a-time")  # MAX_STREAMS_PER_USER=1 on the impatient node
    requests = app.stats.requests
    held = create(patient, headers, tokens_out=2000).json()  # the user's one stream
    wait_for(lambda: app.stats.requests == requests + 1, 5, "the held stream's upstream call")
    requests = app.stats.requests
    refused = _complete(impatient, headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert int(refused.headers["retry-after"]) >= 1
    time.sleep(0.3)
    assert app.stats.requests == requests  # nothing went upstream
    httpx.post(f"{patient.url}/stream/v1/streams/{held['id']}/cancel", headers=headers)
    # the slot is free again: the completion goes out, and the model is slower than 1 s
    wait_for(lambda: create(impatient, headers, tokens_out=1).status_code == 201, 10, "a slot")
    time.sleep(THINK_S + 0.5)  # that probe stream ended (first-token limit), its slot too
    started = time.monotonic()
    timed_out = _complete(impatient, headers)
    assert timed_out.status_code == 504, timed_out.text
    assert time.monotonic() - started < THINK_S
    error = timed_out.json()["error"]
    assert error["type"] == "api_error" and error["code"] == "upstream_timeout"
    assert "/stream/v1/chat/completions" in error["message"]
    assert '"stream": true' in error["message"]
    # a timed-out completion gives its slot back
    wait_for(
        lambda: create(impatient, headers, tokens_out=1).status_code == 201, 5, "its slot back"
    )


def test_a_plain_completion_is_refused_while_the_node_drains(
    start_node: StartNode, upstream: tuple[ScriptedUpstream, ThreadServer], tokens: DevTokens
) -> None:
    app, _ = upstream
    node = start_node(NODE_ID="draining-plain", DRAIN_S="6")
    headers = auth(tokens, "drain-plain")
    created = create(node, headers, tokens_out=200).json()  # keeps the drain going
    read_sse(node.url + created["events_url"], stop_after_deltas=1, timeout=15)
    requests = app.stats.requests
    node.signal(signal.SIGTERM)
    wait_for(lambda: httpx.get(f"{node.url}/stream/healthz").status_code == 503, 5, "the drain")
    refused = _complete(node, headers)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "draining"
    assert int(refused.headers["retry-after"]) >= 1
    assert app.stats.requests == requests
    node.wait(15)
