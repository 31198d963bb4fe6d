"""Per-user admission with real parts: stream-service nodes on moto's DynamoDB server and
an OpenAI-compatible upstream that counts the chat requests it gets.

- a refused create sends nothing upstream (50 creates at the limit: 50 x 429, 0 requests);
- one user's 100 concurrent creates on one node are all admitted, with one admission
  write each;
- the slots of a kill -9'd node lapse on their own (SLOT_TTL_S), under both policies, and
  ``replace`` cancels the user's oldest stream on another node.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import MODEL, StartNode, auth, create
from tests.integration.stream_service.engine_support import (
    store_writes,
    wait_for,
)
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import read_sse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    """The counting upstream (``stats.requests``: chat requests received)."""
    app = ScriptedUpstream(ttft_s=0.02, interval_s=0.02, default_tokens=20)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def node_env(node_env: dict[str, str]) -> dict[str, str]:
    # unread streams live on (they hold their slots); nodes left with streams stop fast
    return {**node_env, "RESUME_GRACE_S": "30", "DRAIN_S": "1"}


@pytest.fixture(scope="module")
def limited(start_node: StartNode) -> ProcessServer:
    """A node where a user may run 2 streams (reject)."""
    return start_node(NODE_ID="limited", MAX_STREAMS_PER_USER="2")


def _chat(node: ProcessServer, client: httpx.Client, headers: dict[str, str], stream: bool):  # type: ignore[no-untyped-def]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "stream": stream,
    }
    return client.post(f"{node.url}/stream/v1/chat/completions", json=body, headers=headers)


def test_creates_refused_at_the_limit_send_nothing_upstream(
    limited: ProcessServer,
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    app, _ = upstream
    headers = auth(tokens, "at-the-limit")
    before = app.stats.requests
    for _ in range(2):  # the user's two long streams
        assert create(limited, headers, tokens_out=2000).status_code == 201
    wait_for(lambda: app.stats.requests == before + 2, 5, "the two upstream calls")
    rejected_before = store_writes(limited, "admit")
    codes: list[tuple[int, str, str]] = []
    with httpx.Client(timeout=10) as client:
        for n in range(50):  # every way in: streams, chat chunks, plain completions
            if n % 3 == 0:
                body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
                response = client.post(
                    f"{limited.url}/stream/v1/streams", json=body, headers=headers
                )
            else:
                response = _chat(limited, client, headers, stream=n % 3 == 1)
            codes.append(
                (
                    response.status_code,
                    response.json()["error"]["code"],
                    response.headers.get("retry-after", ""),
                )
            )
    assert [c[:2] for c in codes] == [(429, "too_many_streams")] * 50
    assert all(int(c[2]) >= 1 for c in codes)  # Retry-After on each
    time.sleep(0.5)  # anything that would have gone out has arrived by now
    assert app.stats.requests == before + 2  # 0 upstream requests for the 50
    # each refusal cost its one conditional write (the holders' node is alive: no eviction)
    assert store_writes(limited, "admit") - rejected_before == 50
    assert store_writes(limited, "evict") == 0


def test_one_users_100_concurrent_creates_on_one_node_are_all_admitted(
    start_node: StartNode,
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    app, _ = upstream
    node = start_node(NODE_ID="wide", MAX_STREAMS_PER_USER="1000")
    headers = auth(tokens, "backend-service")
    admits = store_writes(node, "admit")
    requests = app.stats.requests

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 40,
            }
            return await asyncio.gather(
                *(
                    client.post(f"{node.url}/stream/v1/streams", json=body, headers=headers)
                    for _ in range(100)
                )
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [201] * 100, [r.text for r in responses[:3]]
    assert len({r.json()["id"] for r in responses}) == 100
    # one admission write per create, whatever the user's active count; no lost races
    assert store_writes(node, "admit") - admits == 100
    assert store_writes(node, "replace") == store_writes(node, "evict") == 0
    wait_for(lambda: app.stats.requests == requests + 100, 10, "the 100 upstream calls")
    # all 100 really are active at once: the 101st still fits (limit 1000), the store
    # counts exactly, and each stream runs to its end
    assert create(node, headers, tokens_out=2).status_code == 201
    for response in responses[:3]:
        ending = read_sse(node.url + response.json()["events_url"], timeout=20)
        assert ending.last().event == "done"


def _wait_until_created(
    node: ProcessServer, headers: dict[str, str], timeout: float, tokens_out: int = 5
) -> httpx.Response:
    """Create every 0.1 s until one is admitted (429 meanwhile, nothing else)."""
    start = time.monotonic()
    while True:
        response = create(node, headers, tokens_out=tokens_out)
        if response.status_code == 201:
            return response
        assert response.status_code == 429, response.text
        assert time.monotonic() - start < timeout, "the dead node's slots never lapsed"
        time.sleep(0.1)


def test_slots_of_a_killed_node_lapse_on_their_own(
    start_node: StartNode, limited: ProcessServer, tokens: DevTokens
) -> None:
    victim = start_node(NODE_ID="victim", MAX_STREAMS_PER_USER="2", SLOT_TTL_S="1.5")
    headers = auth(tokens, "slot-user")
    for _ in range(2):
        assert create(victim, headers, tokens_out=2000).status_code == 201
    victim.signal(signal.SIGKILL)
    victim.wait(5)
    killed = time.monotonic()
    refused = create(limited, headers, tokens_out=5)  # its heartbeat has not lapsed yet
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_streams"
    admitted = _wait_until_created(limited, headers, timeout=6)
    assert time.monotonic() - killed <= 1.5 + 1.5  # SLOT_TTL_S, and a create or two
    # both of the dead node's places are free: a second create fits too
    second = create(limited, headers, tokens_out=5)
    assert second.status_code == 201, second.text
    for response in (admitted, second):
        assert read_sse(limited.url + response.json()["events_url"]).last().event == "done"


def test_replace_across_nodes_and_after_a_node_died(
    start_node: StartNode, tokens: DevTokens
) -> None:
    env = {
        "MAX_STREAMS_PER_USER": "2",
        "STREAM_LIMIT_POLICY": "replace",
        "SLOT_TTL_S": "1.5",
    }
    a = start_node(NODE_ID="replace-a", **env)
    b = start_node(NODE_ID="replace-b", **env)
    headers = auth(tokens, "replace-across")
    oldest = create(a, headers, tokens_out=2000).json()
    time.sleep(0.05)
    younger = create(a, headers, tokens_out=2000).json()
    newest = create(b, headers, tokens_out=2000)
    assert newest.status_code == 201, newest.text
    newest_id = newest.json()["id"]
    for node in (a, b):  # the oldest, on node A, ends as cancelled, read on either node
        ending = read_sse(node.url + oldest["events_url"], timeout=10)
        assert ending.last().event == "done"
        assert ending.last().json()["finish_reason"] == "cancelled"
        assert ending.ids == list(range(1, len(ending.ids) + 1))
    status = httpx.get(f"{b.url}/stream/v1/streams/{oldest['id']}", headers=headers).json()
    assert status["status"] == "cancelled"
    assert (
        httpx.get(f"{a.url}/stream/v1/streams/{younger['id']}", headers=headers).json()["status"]
        == "running"
    )
    # the next one, on node A, replaces the younger stream (older than the newest, on B)
    latest = create(a, headers, tokens_out=2000)
    assert latest.status_code == 201
    ending = read_sse(b.url + younger["events_url"], timeout=10)
    assert ending.last().json()["finish_reason"] == "cancelled"
    # node A dies holding the latest: its place lapses, the newest on B is not replaced
    a.signal(signal.SIGKILL)
    a.wait(5)
    time.sleep(1.5 + 0.7)  # SLOT_TTL_S: A's heartbeat lapsed
    after_death = create(b, headers, tokens_out=2000)
    assert after_death.status_code == 201
    time.sleep(0.5)  # had it been replaced, the cancel would have reached its producer
    assert (
        httpx.get(f"{b.url}/stream/v1/streams/{newest_id}", headers=headers).json()["status"]
        == "running"
    )
    for stream_id in (newest_id, after_death.json()["id"]):  # tidy up: the node drains fast
        httpx.post(f"{b.url}/stream/v1/streams/{stream_id}/cancel", headers=headers)
