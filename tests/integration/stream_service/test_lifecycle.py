"""Crashes, drains, disconnects and cancels: nothing lost, nothing paid for twice."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import StartNode, auth, create
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import read_sse


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_the_producer_node(
    cluster: tuple[ProcessServer, ProcessServer], start_node: StartNode, tokens: DevTokens
) -> None:
    _, b = cluster
    victim = start_node(NODE_ID="victim")
    created = create(victim, auth(tokens), tokens_out=400).json()
    first = read_sse(victim.url + created["events_url"], stop_after_deltas=10)
    time.sleep(0.6)  # a couple of flushes reach the store
    victim.signal(signal.SIGKILL)
    victim.wait(5)
    rest = read_sse(b.url + created["events_url"], headers={"Last-Event-ID": "3"}, timeout=30)
    assert rest.closed_by_server
    ids = list(range(1, 4)) + rest.ids
    assert ids == list(range(1, len(ids) + 1))  # stored events, in order, then the error
    error = rest.last()
    assert error.event == "error"
    assert error.json()["code"] == "producer_lost"
    assert error.json()["retryable"] is True
    # at least what the first client saw was stored (flushed before the kill)
    assert len(rest.ids) + 3 > len(first.ids)
    status = httpx.get(f"{b.url}/stream/v1/streams/{created['id']}", headers=auth(tokens)).json()
    assert status["status"] == "failed"
    # a second resume sees the very same ending (one error event, same id)
    again = read_sse(b.url + created["events_url"], headers={"Last-Event-ID": str(error.id - 1)})
    assert [(e.id, e.event) for e in again.events] == [(error.id, "error")]


def test_sigterm_drains_the_node(
    cluster: tuple[ProcessServer, ProcessServer],
    start_node: StartNode,
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    _, b = cluster
    app, _ = upstream
    node = start_node(NODE_ID="draining")
    created = create(node, auth(tokens), tokens_out=60).json()  # ~3 s of tokens
    first_holder: list[object] = []

    def reader() -> None:
        first_holder.append(read_sse(node.url + created["events_url"], timeout=20))

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.8)
    started = time.monotonic()
    node.signal(signal.SIGTERM)
    thread.join(10)
    first = first_holder[0]
    assert first.closed_by_server  # type: ignore[attr-defined]
    assert first.retry  # type: ignore[attr-defined]  # told to reconnect
    assert first.last().event == "delta"  # type: ignore[attr-defined]  # no event added for the drain
    assert httpx.get(f"{node.url}/stream/healthz").status_code == 503
    refused = create(node, auth(tokens), tokens_out=5)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "draining"
    # Reconnect to another node: the producer keeps going on the draining node and flushes.
    last_id = first.ids[-1]  # type: ignore[attr-defined]
    rest = read_sse(
        b.url + created["events_url"], headers={"Last-Event-ID": str(last_id)}, timeout=20
    )
    assert rest.last().event == "done"
    assert first.ids + rest.ids == list(range(1, rest.ids[-1] + 1))  # type: ignore[attr-defined]
    assert first.text + rest.text == app.expected_text(60)  # type: ignore[attr-defined]
    code = node.wait(10)
    elapsed = time.monotonic() - started
    assert code in (0, -signal.SIGTERM)
    assert elapsed < 6 + 3  # DRAIN_S plus process exit


def test_no_reader_cancels_the_upstream_after_grace(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    a, _ = cluster
    app, _ = upstream
    before = app.stats.disconnects
    created = create(a, auth(tokens), tokens_out=1000).json()
    read_sse(a.url + created["events_url"], stop_after_deltas=3)
    left_at = time.monotonic()
    _wait_for(
        lambda: app.stats.disconnects > before, 10, "the upstream to see the connection close"
    )
    waited = time.monotonic() - left_at
    assert 1.5 <= waited < 1.5 + 1.5, waited  # RESUME_GRACE_S=1.5, polled every 100 ms
    status = httpx.get(f"{a.url}/stream/v1/streams/{created['id']}", headers=auth(tokens)).json()
    assert status["status"] == "cancelled"
    ending = read_sse(
        a.url + created["events_url"], headers={"Last-Event-ID": str(status["last_event_id"] - 1)}
    )
    assert ending.last().event == "done"
    assert ending.last().json()["finish_reason"] == "cancelled"
    metrics = httpx.get(f"{a.url}/stream/metrics").text
    assert 'rtai_stream_upstream_cancels_total{reason="no_reader"}' in metrics


def test_a_reader_on_another_node_keeps_the_stream_alive(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    a, b = cluster
    app, _ = upstream
    created = create(a, auth(tokens), tokens_out=70).json()  # 3.5 s, more than the grace
    whole = read_sse(b.url + created["events_url"], timeout=20)  # only node B reads
    assert whole.last().event == "done"
    assert whole.last().json()["finish_reason"] == "stop"
    assert whole.text == app.expected_text(70)


def test_cancel_from_the_other_node_stops_the_upstream(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    a, b = cluster
    app, _ = upstream
    before = app.stats.disconnects
    created = create(a, auth(tokens), tokens_out=1000).json()
    time.sleep(0.5)  # the stream's record reaches the store
    sent = time.monotonic()
    response = httpx.post(f"{b.url}/stream/v1/streams/{created['id']}/cancel", headers=auth(tokens))
    assert response.status_code == 200
    _wait_for(lambda: app.stats.disconnects > before, 5, "the upstream to be cancelled")
    assert time.monotonic() - sent < 1.0
    ending = read_sse(a.url + created["events_url"])
    assert ending.last().json()["finish_reason"] == "cancelled"
    # and a local cancel is immediate
    created = create(a, auth(tokens), tokens_out=1000).json()
    before = app.stats.disconnects
    sent = time.monotonic()
    # (a URL token only reads: cancelling takes the bearer token)
    refused = httpx.post(a.url + created["events_url"].replace("/events?", "/cancel?"))
    assert refused.status_code == 401
    body = httpx.post(
        f"{a.url}/stream/v1/streams/{created['id']}/cancel", headers=auth(tokens)
    ).json()
    assert body["status"] == "cancelled"
    _wait_for(lambda: app.stats.disconnects > before, 5, "the upstream to be cancelled")
    assert time.monotonic() - sent < 0.5


def test_drain_breaks_chunk_streams_so_sdk_clients_notice(
    start_node: StartNode,
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    """A draining node must not end an OpenAI-format stream cleanly (the SDK would take a
    short reply for a whole one): the connection breaks, and the SDK raises."""
    import httpx2
    import openai

    from tests.integration.stream_service.conftest import MODEL

    app, _ = upstream
    node = start_node(NODE_ID="draining-chunks")
    client = openai.OpenAI(
        base_url=f"{node.url}/stream/v1", api_key=tokens.mint("alice"), max_retries=0
    )
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=60, stream=True
    )
    text = ""

    def consume() -> None:
        nonlocal text
        for index, chunk in enumerate(stream):
            text += "".join(c.delta.content or "" for c in chunk.choices)
            if index == 5:
                node.signal(signal.SIGTERM)

    with pytest.raises((openai.APIError, httpx2.HTTPError)):
        consume()
    assert 0 < len(text) < len(app.expected_text(60))
    node.wait(10)
