"""Rooms over WebSocket through Redis trouble (SPEC section 6, issue 12): after a restart
of the redis-server (same port) messages and reply events flow again between the nodes
and presence is re-announced; events a member missed while the bus was stalled are filled
from the store, so every member ends with every seq of the reply, in order, no gap."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from core.auth.dev import DevTokens
from tests.integration.ws.conftest import WsClient, bearer, open_ws, post, seqs
from tests.support.nodes import Nodes, start_nodes
from tests.support.redis import RedisServer
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

# replies of 48 tokens at 60 ms: ~3 s, long enough to break the bus in the middle
BUS_ENV = {"LOCAL_TOKEN_DELAY_MS": "60"}


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes({**node_env, **BUS_ENV})


@pytest.fixture(scope="module")
def cluster(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("bus-a", "bus-b")


def names(*who: str) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{name}-{tag}" for name in who]


async def room_of(
    a: ProcessServer, b: ProcessServer, tokens: DevTokens, *users: str
) -> tuple[str, WsClient, WsClient]:
    """A room of ``users``: the first joined on node a, the second on node b."""
    created = await post(a, "/stream/v1/rooms", bearer(tokens, users[0]))
    room_id: str = created.json()["id"]
    for user in users[1:]:
        added = await post(a, f"/stream/v1/rooms/{room_id}/members", bearer(tokens, users[0]),
                           {"user": user})  # fmt: skip
        assert added.status_code in (200, 201)
    first, second = await open_ws(a, tokens, users[0]), await open_ws(b, tokens, users[1])
    for ws in (first, second):
        await ws.send({"type": "join", "room": room_id})
        await ws.expect({"type": "joined"})
    await first.expect({"type": "presence", "user": users[1], "state": "joined"})
    return room_id, first, second


def reply_frames(ws: WsClient, stream_id: str) -> list[dict[str, Any]]:
    return [f for f in ws.of(stream_id) if f["type"] in ("status", "delta", "done", "error")]


def presence_of(ws: WsClient, user: str) -> list[str]:
    return [f["state"] for f in ws.frames if f["type"] == "presence" and f["user"] == user]


async def whole_reply(
    sender: WsClient, other: WsClient, room_id: str, content: str
) -> list[dict[str, Any]]:
    """``sender`` asks the room; both members get the whole reply, the same."""
    await sender.send({"type": "chat.send", "room": room_id, "content": content, "ref": content})
    stream_id = (await sender.expect({"type": "stream.created", "ref": content}))["stream_id"]
    for ws in (sender, other):
        await ws.expect({"type": "message", "role": "user", "content": content})
        await ws.stream(stream_id, within=20)
        frames = reply_frames(ws, stream_id)
        assert seqs(frames) == list(range(1, frames[-1]["seq"] + 1)), ws.name
    assert reply_frames(sender, stream_id) == reply_frames(other, stream_id)
    return reply_frames(sender, stream_id)


async def test_after_a_redis_restart_the_room_flows_again_between_nodes(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens, redis_server: RedisServer
) -> None:
    a, b = cluster
    alice_name, bob_name, carol_name = names("alice", "bob", "carol")
    room_id, alice, bob = await room_of(a, b, tokens, alice_name, bob_name, carol_name)

    # down longer than PRESENCE_TTL_S (1.5 s): the nodes lose sight of each other's members
    await asyncio.to_thread(redis_server.restart, 2.5)

    # presence is re-announced: bob is (again) present for alice, and a newcomer on node a
    # sees bob, who is on node b
    async def bob_present() -> None:
        while presence_of(alice, bob_name)[-1:] != ["joined"]:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(bob_present(), 6)
    carol = await open_ws(a, tokens, carol_name)
    await carol.send({"type": "join", "room": room_id})
    assert (await carol.expect({"type": "joined"}))["members"] == sorted(
        [alice_name, bob_name, carol_name]
    )

    # messages both ways, and a reply produced on each node reaches the other live
    await bob.send({"type": "chat.send", "room": room_id, "content": "back?", "ref": "b1"})
    await alice.expect({"type": "message", "user": bob_name, "content": "back?"}, within=5)
    await whole_reply(alice, bob, room_id, "from a")
    await whole_reply(bob, alice, room_id, "from b")
    for ws in (alice, bob, carol):
        await ws.close()


async def test_a_redis_restart_mid_reply_leaves_no_gap(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens, redis_server: RedisServer
) -> None:
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id, alice, bob = await room_of(a, b, tokens, alice_name, bob_name)
    await alice.send({"type": "chat.send", "room": room_id, "content": "go", "ref": "go"})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]
    await bob.expect({"type": "delta", "stream_id": stream_id})
    await asyncio.to_thread(redis_server.restart, 0.3)
    for ws in (alice, bob):
        await ws.stream(stream_id, within=20)
    assert reply_frames(bob, stream_id) == reply_frames(alice, stream_id)
    frames = reply_frames(bob, stream_id)
    assert seqs(frames) == list(range(1, frames[-1]["seq"] + 1))
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "stop"
    for ws in (alice, bob):
        await ws.close()


@pytest.mark.parametrize("paused_s", [1.5, 4.0], ids=["mid-reply", "past-its-end"])
async def test_reply_events_missed_on_a_stalled_bus_are_filled_from_the_store(
    cluster: tuple[ProcessServer, ProcessServer],
    tokens: DevTokens,
    redis_server: RedisServer,
    paused_s: float,
) -> None:
    """Redis frozen (SIGSTOP) while a reply streams, then thawed: the nodes take it for an
    outage and reconnect; publications queued meanwhile may arrive late or be lost.
    Either way the member on the other node ends with the whole reply."""
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id, alice, bob = await room_of(a, b, tokens, alice_name, bob_name)
    await alice.send({"type": "chat.send", "room": room_id, "content": "go", "ref": "go"})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]
    for _ in range(3):
        await bob.expect({"type": "delta", "stream_id": stream_id})
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # the bus stalls (no error, no answer)
    try:
        await asyncio.sleep(paused_s)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    whole = await alice.stream(stream_id, within=20)  # alice is on the producer's node
    assert seqs(whole) == list(range(1, whole[-1]["seq"] + 1))
    frames = await bob.stream(stream_id, within=20)
    assert seqs(frames) == seqs(whole)  # every seq 1..N in order, no gap, no duplicate
    assert frames == whole
    for ws in (alice, bob):
        await ws.close()


def local_ports(pid: int) -> set[int]:
    """The local TCP ports of process ``pid``'s sockets (its connections to Redis)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def cut_off(redis_server: RedisServer, node: ProcessServer, stop: asyncio.Event) -> int:
    """Cut ``node`` off the bus until ``stop``: its Redis connections are closed and no new
    one is let in (``maxclients`` = the clients left), so what the other nodes publish
    meanwhile never reaches it (at-most-once). Returns how many connections it closed."""
    assert node.proc is not None
    client = Redis.from_url(redis_server.url)
    await client.ping()
    ports = local_ports(node.proc.pid)
    theirs = [c["addr"] for c in await client.client_list()
              if int(c["addr"].rpartition(":")[2]) in ports]  # fmt: skip
    others = len(await client.client_list()) - len(theirs)
    limit = (await client.config_get("maxclients"))["maxclients"]
    await client.config_set("maxclients", others)
    try:
        for addr in theirs:
            await client.client_kill(addr)
        await stop.wait()
    finally:
        await client.config_set("maxclients", limit)
        await client.aclose()
    return len(theirs)


@pytest.mark.parametrize("until", ["mid-reply", "past-its-end"])
async def test_reply_events_the_bus_lost_are_filled_from_the_store(
    cluster: tuple[ProcessServer, ProcessServer],
    tokens: DevTokens,
    redis_server: RedisServer,
    until: str,
) -> None:
    """Bob's node is cut off the bus for part of a reply (or until after its end): the
    events published meanwhile never reach it; bob still gets every seq, from the store
    (a later event reveals the gap; a lost end is found when the reply goes silent)."""
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id, alice, bob = await room_of(a, b, tokens, alice_name, bob_name)
    await alice.send({"type": "chat.send", "room": room_id, "content": "go", "ref": "go"})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]
    for _ in range(3):
        await bob.expect({"type": "delta", "stream_id": stream_id})

    stop = asyncio.Event()
    cutting = asyncio.ensure_future(cut_off(redis_server, b, stop))  # bob's node
    if until == "mid-reply":
        await asyncio.sleep(1.0)
    else:  # the reply ends (done) while the bus is cut
        await alice.stream(stream_id, within=20)
        await asyncio.sleep(0.5)
    stop.set()
    assert await cutting > 0

    whole = await alice.stream(stream_id, within=20)  # alice is on the producer's node
    assert seqs(whole) == list(range(1, whole[-1]["seq"] + 1))
    frames = await bob.stream(stream_id, within=10)
    assert seqs(frames) == seqs(whole)  # every seq 1..N in order, no gap, no duplicate
    assert frames == whole
    for ws in (alice, bob):
        await ws.close()


async def test_every_socket_of_a_big_room_on_one_node_gets_the_whole_reply_after_a_bus_loss(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens, redis_server: RedisServer
) -> None:
    """40 sockets of the room on bob's node, more than MAX_READERS_PER_STREAM (32), lose part
    of a reply on the bus: the node fills the gap with one shared reader of the stream, so
    every socket (not only the first 32) gets every seq through `done`."""
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id, alice, bob = await room_of(a, b, tokens, alice_name, bob_name)
    more = [await open_ws(b, tokens, bob_name) for _ in range(39)]
    for ws in more:
        await ws.send({"type": "join", "room": room_id})
        await ws.expect({"type": "joined"}, within=10)
    await alice.send({"type": "chat.send", "room": room_id, "content": "go", "ref": "go"})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]
    for _ in range(3):
        await bob.expect({"type": "delta", "stream_id": stream_id})

    stop = asyncio.Event()
    cutting = asyncio.ensure_future(cut_off(redis_server, b, stop))
    await asyncio.sleep(1.0)
    stop.set()
    assert await cutting > 0

    whole = await alice.stream(stream_id, within=20)
    assert seqs(whole) == list(range(1, whole[-1]["seq"] + 1))
    for ws in (bob, *more):
        frames = await ws.stream(stream_id, within=20)
        assert [f for f in ws.frames if f["type"] == "error"] == [], ws.name
        assert seqs(frames) == seqs(whole), ws.name  # every seq 1..N, no gap, no duplicate
        assert frames == whole
    for ws in (alice, bob, *more):
        await ws.close()
