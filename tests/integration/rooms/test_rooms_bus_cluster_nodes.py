"""Rooms between two real stream nodes (``python -m stream_service``) whose bus is a Redis
Cluster of three masters (``BUS_MODE=cluster``, as on ElastiCache Serverless), over
WebSocket: presence, typing, messages and live replies cross nodes; a master restarted
in the middle of a reply leaves no gap (the member fills it from the store) and shows as
``degraded`` on ``/stream/healthz`` (still 200: the node keeps serving) until it is back."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.integration.ws.conftest import FAST_ENV, open_ws, seqs
from tests.integration.ws.test_ws_rooms_bus import names, reply_frames, room_of, whole_reply
from tests.support.nodes import Nodes, start_nodes
from tests.support.redis import RedisClusterServers, redis_cluster_fixture
from tests.support.servers import ProcessServer, wait_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    yield from redis_cluster_fixture()


@pytest.fixture(scope="module")
def nodes(aws_env: dict[str, str], redis_cluster: RedisClusterServers) -> Iterator[Nodes]:
    wait_http(aws_env["DYNAMODB_ENDPOINT_URL"])
    env = {
        **aws_env,
        **FAST_ENV,
        "LOCAL_TOKEN_DELAY_MS": "60",  # ~3 s replies: long enough to restart a master
        "STREAMS_TABLE": f"bus-cluster-{uuid.uuid4().hex[:8]}",
        "BUS_URL": redis_cluster.url,
        "BUS_MODE": "cluster",
    }
    yield from start_nodes(env)


@pytest.fixture(scope="module")
def tokens() -> DevTokens:
    return DevTokens(DEV_SECRET_DEFAULT, 3600)


@pytest.fixture(scope="module")
def pair(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("cluster-a", "cluster-b")


def healthz(node: ProcessServer) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{node.url}/stream/healthz", timeout=5)
    return response.status_code, response.json()


async def test_presence_typing_messages_and_replies_cross_nodes(
    pair: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = pair
    for node in (a, b):
        status, body = healthz(node)
        assert status == 200 and body["status"] == "ok", body
        assert body["bus"]["kind"] == "redis-cluster" and body["bus"]["state"] == "connected"
    alice_name, bob_name = names("alice", "bob")
    room_id, alice, bob = await room_of(a, b, tokens, alice_name, bob_name)  # presence

    await bob.send({"type": "typing", "room": room_id, "active": True})
    await alice.expect({"type": "typing", "room": room_id, "user": bob_name, "active": True})
    await alice.send({"type": "typing", "room": room_id, "active": True})
    await bob.expect({"type": "typing", "room": room_id, "user": alice_name, "active": True})

    await bob.send({"type": "chat.send", "room": room_id, "content": "hi a", "ref": "b1"})
    await alice.expect({"type": "message", "user": bob_name, "content": "hi a"})
    await whole_reply(alice, bob, room_id, "from a")  # produced on node a, live on b
    await whole_reply(bob, alice, room_id, "from b")  # and the other way

    await bob.close()
    await alice.expect({"type": "presence", "user": bob_name, "state": "left"})
    await alice.close()


async def test_a_master_restarted_mid_reply_leaves_no_gap(
    pair: tuple[ProcessServer, ProcessServer],
    tokens: DevTokens,
    redis_cluster: RedisClusterServers,
) -> None:
    a, b = pair
    alice_name, bob_name = names("alice", "bob")
    room_id, alice, bob = await room_of(a, b, tokens, alice_name, bob_name)
    owner = redis_cluster.node_of(f"rtai:room:{room_id}")  # the master of the room's slot

    await alice.send({"type": "chat.send", "room": room_id, "content": "go", "ref": "go"})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]
    for _ in range(3):
        await bob.expect({"type": "delta", "stream_id": stream_id})

    restarted = threading.Event()

    def restart() -> None:
        try:
            redis_cluster.restart(owner, down_s=0.5)
        finally:
            restarted.set()

    restarting = asyncio.get_running_loop().run_in_executor(None, restart)
    seen: list[tuple[int, dict[str, Any]]] = []
    while not restarted.is_set():  # the outage shows on both nodes, as degraded (200)
        seen.extend(await asyncio.gather(*(asyncio.to_thread(healthz, n) for n in (a, b))))
        await asyncio.sleep(0.05)
    await restarting
    degraded = [body for status, body in seen if body["status"] == "degraded"]
    assert degraded, seen
    assert all(status == 200 for status, _ in seen)
    assert all(body["bus"]["state"] != "connected" for body in degraded)
    assert any(body["bus"]["shards"]["down"] == 1 for body in degraded), degraded

    whole = await alice.stream(stream_id, within=30)  # alice is on the producer's node
    assert seqs(whole) == list(range(1, whole[-1]["seq"] + 1))
    assert whole[-1]["type"] == "done" and whole[-1]["finish_reason"] == "stop"
    frames = await bob.stream(stream_id, within=20)
    assert reply_frames(bob, stream_id) == reply_frames(alice, stream_id)
    assert seqs(frames) == seqs(whole)  # every seq 1..N in order, no gap, no duplicate

    async def both_ok() -> None:
        while not all(healthz(n)[1]["status"] == "ok" for n in (a, b)):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(both_ok(), 20)
    # the room flows again both ways after the restart
    await whole_reply(bob, alice, room_id, "after the restart")
    newcomer = await open_ws(a, tokens, alice_name)
    await newcomer.send({"type": "join", "room": room_id})
    assert bob_name in (await newcomer.expect({"type": "joined"}))["members"]
    for ws in (alice, bob, newcomer):
        await ws.close()
