"""Resumes, readers and cancels with real parts: stream-service nodes on moto's DynamoDB
server, an OpenAI-compatible upstream, kill -9 and SIGSTOP.

- a client that saw live events its dead producer never stored always ends with a
  terminal event numbered above its Last-Event-ID, on every node, however often it resumes;
- a Last-Event-ID beyond a stream running on another node is a 400 (at the latest at the
  stream's end) and that reader does not hold the grace window open;
- resumes of a long finished stream come in pages, every event in order;
- readers beyond MAX_READERS_PER_STREAM / MAX_READERS_PER_USER get 429 too_many_readers;
- POST .../cancel answers only the statuses of the contract.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import StartNode, auth, create
from tests.integration.stream_service.engine_support import metric, wait_for
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import SseResult, read_sse

pytestmark = pytest.mark.slow

CANCEL_STATUSES = {"running", "completed", "cancelled", "failed", "cancelling"}
STATUSES = {"running", "completed", "cancelled", "failed"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.02, interval_s=0.01, default_tokens=20)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def node_env(node_env: dict[str, str]) -> dict[str, str]:
    return {
        **node_env,
        "RESUME_PAGE_EVENTS": "16",
        "RETAIN_EVENTS": "4",
        "MEMORY_WINDOW": "16",
        "MAX_READERS_PER_STREAM": "2",
        "MAX_READERS_PER_USER": "3",
        "DRAIN_S": "1",
    }


def _url(node: ProcessServer, created: dict[str, str]) -> str:
    return node.url + created["events_url"]


def _status(node: ProcessServer, stream_id: str, headers: dict[str, str]) -> str:
    response = httpx.get(f"{node.url}/stream/v1/streams/{stream_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    assert status in STATUSES
    return status


def _cancel(node: ProcessServer, stream_id: str, headers: dict[str, str]) -> str:
    response = httpx.post(
        f"{node.url}/stream/v1/streams/{stream_id}/cancel", headers=headers, timeout=10
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    assert status in CANCEL_STATUSES, status
    return status


def _resume(node: ProcessServer, created: dict[str, str], after: int) -> SseResult:
    result = read_sse(_url(node, created), headers={"Last-Event-ID": str(after)}, timeout=20)
    assert result.status == 200, result.body
    return result


def _assert_ends_above(result: SseResult, after: int) -> None:
    """Exactly the ids after ``after``, consecutive, ending with a terminal event."""
    assert result.events, f"an empty reply to Last-Event-ID {after}"
    assert result.ids == list(range(after + 1, after + 1 + len(result.ids))), (after, result.ids)
    assert result.last().event in ("done", "error")
    assert result.last().id is not None and result.last().id > after
    assert sum(e.event in ("done", "error") for e in result.events) == 1


def test_a_client_that_saw_lost_events_always_ends_above_its_last_event_id(
    cluster: tuple[ProcessServer, ProcessServer], start_node: StartNode, tokens: DevTokens
) -> None:
    a, b = cluster
    headers = auth(tokens, "lost-events")
    # a producer with slow tokens that stores rarely (every 5 s), read live
    thinking = ScriptedUpstream(ttft_s=0.5, interval_s=0.2, default_tokens=100)
    with ThreadServer(thinking) as slow:
        victim = start_node(
            NODE_ID="lost-victim",
            FLUSH_INTERVAL_MS="5000",
            FLUSH_MAX_EVENTS="512",
            OPENAI_BASE_URL=f"{slow.url}/v1",
        )
        created = create(victim, headers, tokens_out=100).json()
        live = read_sse(_url(victim, created), stop_after_deltas=1)
        victim.signal(signal.SIGKILL)
        victim.wait(5)
    first_delta = next(e for e in live.events if e.event == "delta")
    assert first_delta.id is not None
    seen = first_delta.id
    assert live.ids == list(range(1, seen + 1))
    # from the start, on another node: the stored events, then producer_lost (once its
    # lease lapsed); it ends at or below what the first client saw live: they were lost
    whole = _resume(a, created, 0)
    _assert_ends_above(whole, 0)
    ending = whole.last()
    assert ending.event == "error"
    assert ending.json()["code"] == "producer_lost" and ending.json()["retryable"] is True
    assert ending.id is not None and ending.id <= seen  # the scenario of the issue
    # the client that saw the first delta live resumes with its id, on either node
    for node in (a, b):
        rest = _resume(node, created, seen)
        _assert_ends_above(rest, seen)
        assert live.ids + rest.ids == list(range(1, seen + 1 + len(rest.ids)))  # no skip, no repeat
        assert rest.last().json()["code"] == "producer_lost"
    # however often, from wherever it is, on every node
    for after in (0, 1, seen, ending.id, seen + 1, seen + 2, seen + 7):
        for node in (b, a):
            _assert_ends_above(_resume(node, created, after), after)
    # repeated resumes with the id of the ending it was just given
    after = seen
    for _ in range(4):
        rest = _resume(b, created, after)
        _assert_ends_above(rest, after)
        assert rest.last().id is not None
        after = rest.last().id
    for node in (a, b):
        assert _status(node, created["id"], headers) == "failed"
        assert _cancel(node, created["id"], headers) == "failed"


def test_a_last_event_id_beyond_a_stream_on_another_node_is_a_400_and_holds_nothing(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    a, b = cluster
    app, _ = upstream
    headers = auth(tokens, "far-ahead")
    disconnects = app.stats.disconnects
    no_reader = metric(a, "rtai_stream_upstream_cancels_total", reason="no_reader")
    created = create(a, headers, tokens_out=5000).json()  # ~50 s of tokens; nobody reads
    time.sleep(0.3)  # its record reaches the store
    started = time.monotonic()
    beyond = read_sse(_url(b, created), headers={"Last-Event-ID": "1000000"}, timeout=20)
    waited = time.monotonic() - started
    assert beyond.status == 400, beyond.body
    assert '"invalid_last_event_id"' in beyond.body
    # ...decided at the latest when the stream ended: cancelled, for lack of a reader, after
    # RESUME_GRACE_S (1.5 s); the far-ahead reader did not hold it open
    assert waited < 1.5 + 3.0, waited
    wait_for(lambda: app.stats.disconnects > disconnects, 5, "the upstream call to stop")
    assert _status(a, created["id"], headers) == "cancelled"
    assert metric(a, "rtai_stream_upstream_cancels_total", reason="no_reader") == no_reader + 1
    # once the stream ended, every node knows at once
    for node in (a, b):
        started = time.monotonic()
        again = read_sse(_url(node, created), headers={"Last-Event-ID": "1000000"}, timeout=10)
        assert again.status == 400 and '"invalid_last_event_id"' in again.body
        assert time.monotonic() - started < 2.0


def test_resumes_of_a_long_finished_stream_come_in_pages_with_every_event(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    a, b = cluster
    app, _ = upstream
    headers = auth(tokens, "long-reader")
    created = create(a, headers, tokens_out=400).json()
    whole = read_sse(_url(a, created), timeout=30)  # read live to the end
    assert whole.last().event == "done"
    assert whole.ids == list(range(1, 403))
    replayed_b = metric(b, "rtai_stream_replayed_events_total", source="store")
    # node A keeps 4 events in memory (RETAIN_EVENTS): both nodes read the store, in
    # pages of about 16 events (RESUME_PAGE_EVENTS)
    for node, after in ((a, 0), (b, 0), (b, 137), (a, 250)):
        resumed = _resume(node, created, after)
        assert resumed.ids == list(range(after + 1, 403))
        assert [e.event for e in resumed.events][-1] == "done"
        if after == 0:
            assert resumed.text == app.expected_text(400)
        else:
            assert resumed.text == "".join(
                e.json()["text"] for e in whole.events[after:-1] if e.event == "delta"
            )
    assert metric(b, "rtai_stream_replayed_events_total", source="store") - replayed_b == 402 + 265
    chunks = read_sse(_url(b, created) + "&format=openai", timeout=20)
    assert chunks.ids == list(range(1, 403))
    assert chunks.events[-1].data == "[DONE]"


def _open(client: httpx.Client, node: ProcessServer, created: dict[str, str]) -> httpx.Response:
    return client.send(client.build_request("GET", _url(node, created)), stream=True)


def test_readers_beyond_the_limits_get_429_too_many_readers(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    headers = auth(tokens, "many-readers")
    first = create(a, headers, tokens_out=3000).json()
    second = create(a, headers, tokens_out=3000).json()
    opened: list[httpx.Response] = []
    with httpx.Client(timeout=10) as client:
        try:
            for _ in range(2):  # MAX_READERS_PER_STREAM=2
                opened.append(_open(client, a, first))
                assert opened[-1].status_code == 200
            refused = _open(client, a, first)
            refused.read()
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_readers"
            assert "of this stream" in refused.json()["error"]["message"]
            assert int(refused.headers["retry-after"]) >= 1
            opened.append(_open(client, a, second))  # the user's third: MAX_READERS_PER_USER
            assert opened[-1].status_code == 200
            refused = _open(client, a, second)
            refused.read()
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_readers"
            assert "for this user" in refused.json()["error"]["message"]
            # another user reads the same node freely; a reader that leaves frees its seat
            other = create(a, auth(tokens, "someone-else"), tokens_out=5).json()
            assert read_sse(_url(a, other)).last().event == "done"
            opened.pop(0).close()

            def admitted() -> bool:
                response = _open(client, a, second)
                if response.status_code == 200:
                    opened.append(response)
                    return True
                response.read()
                assert response.json()["error"]["code"] == "too_many_readers"
                return False

            wait_for(admitted, 5, "the seat of the reader that left")
        finally:
            for response in opened:
                response.close()
    for created in (first, second):
        _cancel(a, created["id"], headers)


def test_cancel_answers_only_the_contracts_statuses(
    cluster: tuple[ProcessServer, ProcessServer], start_node: StartNode, tokens: DevTokens
) -> None:
    a, b = cluster
    headers = auth(tokens, "canceller")
    # running here / elsewhere, then cancelled
    running = create(a, headers, tokens_out=3000).json()
    time.sleep(0.3)
    assert _cancel(b, running["id"], headers) in ("cancelling", "cancelled")
    assert _cancel(a, running["id"], headers) == "cancelled"
    wait_for(lambda: _status(b, running["id"], headers) == "cancelled", 5, "cancelled on B")
    assert _cancel(b, running["id"], headers) == "cancelled"
    # completed
    short = create(a, headers, tokens_out=3).json()
    assert read_sse(_url(a, short)).last().event == "done"
    for node in (a, b):
        assert _cancel(node, short["id"], headers) == "completed"
    # a producer frozen past its lease (SIGSTOP), declared lost, then thawed: a zombie
    zombie = start_node(NODE_ID="zombie")
    frozen = create(zombie, headers, tokens_out=3000).json()
    read_sse(_url(zombie, frozen), stop_after_deltas=3)
    time.sleep(0.4)  # its record and first events are stored
    zombie.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: _status(a, frozen["id"], headers) == "failed", 10, "the lost lease")
    finally:
        zombie.signal(signal.SIGCONT)
    answers = [_cancel(node, frozen["id"], headers) for node in (zombie, a, b, zombie)]
    assert set(answers) <= CANCEL_STATUSES
    # every node tells the same story once the zombie learned it lost its lease
    seen: list[dict[str, str]] = []

    def one_status() -> bool:
        seen.append({n.url: _status(n, frozen["id"], headers) for n in (zombie, a, b)})
        return set(seen[-1].values()) == {"failed"}

    try:
        wait_for(one_status, 5, "one status everywhere")
    except AssertionError:
        raise AssertionError(f"cancel answers {answers}; statuses {seen[-1]}") from None
    assert _cancel(zombie, frozen["id"], headers) == "failed"
