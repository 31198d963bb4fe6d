"""The room service on two nodes: two RoomService instances, each with its own Redis bus
connection, on one real redis-server and one moto DynamoDB server over HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import Settings
from stream_service.rooms.bus.base import BusMetrics
from stream_service.rooms.bus.redis import RedisBus
from stream_service.rooms.config import RoomSettings
from stream_service.rooms.service import RoomService
from stream_service.store.rooms_base import RoomLimits, RoomNotFound
from stream_service.store.rooms_dynamodb import DynamoRoomStore
from tests.support.redis import RedisServer
from tests.unit.rooms.conns import Conn

pytestmark = pytest.mark.slow

Node = Callable[..., Awaitable[RoomService]]


@pytest.fixture
async def node(aws_env: dict[str, str], redis_server: RedisServer) -> AsyncIterator[Node]:
    settings = Settings(
        dynamodb_endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
        streams_table=f"rooms-{uuid.uuid4().hex[:6]}",
    )
    ensure_tables(clients.dynamodb(settings), settings)
    started: list[RoomService] = []

    async def start(name: str, redis_url: str | None = None, **config: float) -> RoomService:
        cfg = RoomSettings(bus_url=redis_url or redis_server.url, **config)  # type: ignore[arg-type]
        bus = RedisBus(cfg.bus_url or "", name, BusMetrics(), reconnect_min_s=0.05,
                       reconnect_max_s=0.5, ping_s=0.5)  # fmt: skip
        store = DynamoRoomStore(clients.dynamodb(settings), settings.streams_table, RoomLimits())
        service = RoomService(store, bus, cfg)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()  # a second stop does nothing


async def room_with(rooms: RoomService, *users: str) -> str:
    room = await rooms.create_room(users[0])
    for user in users[1:]:
        await rooms.add_member(users[0], room.id, user)
    return room.id


async def test_presence_messages_and_replies_cross_nodes(node: Node) -> None:
    a, b = await node("a"), await node("b")
    room_id = await room_with(a, "alice", "bob", "carol")
    alice, bob = Conn("alice"), Conn("bob")
    await a.join(alice, room_id)
    snap = await b.join(bob, room_id)
    assert snap.members == ["alice", "bob"]  # alice is on the other node
    await alice.wait({"type": "presence", "user": "bob", "state": "joined"})

    sent = await b.post_message("bob", room_id, "hi from b")
    got = await alice.wait({"type": "message", "id": sent.id})
    assert got == {"type": "message", "room": room_id, "id": sent.id, "user": "bob",
                   "role": "user", "content": "hi from b"}  # fmt: skip

    # a reply produced on node a reaches bob on node b, every event, in order
    await a.reply_started(room_id, "s1", "alice")
    for seq in range(1, 51):
        frame = f'{{"type":"delta","stream_id":"s1","seq":{seq},"text":"t{seq}"}}'.encode()
        await a.publish_reply_event(room_id, "s1", seq, frame)
    await bob.wait({"type": "delta", "seq": 50})
    assert [f["seq"] for f in bob.of("delta")] == list(range(1, 51))
    assert [f["seq"] for f in alice.of("delta")] == list(range(1, 51))
    (done,) = await a.reply_finished(room_id, "s1", "t1 t2 ...")
    await bob.wait({"type": "message", "id": done.id, "role": "assistant"})

    # bob leaves: alice is told right away (not after a heartbeat lapses)
    t0 = time.monotonic()
    await b.leave_all(bob)
    await alice.wait({"type": "presence", "user": "bob", "state": "left"})
    assert time.monotonic() - t0 < 2.0  # a heartbeat would take PRESENCE_TTL_S (3.5 s)

    # a non-member is refused on either node
    for rooms in (a, b):
        with pytest.raises(RoomNotFound):
            await rooms.join(Conn("mallory"), room_id)


async def test_a_node_that_dies_loses_its_members_within_seconds(node: Node) -> None:
    a, b = await node("a"), await node("b")  # default heartbeat 1 s, presence TTL 3.5 s
    room_id = await room_with(a, "alice", "bob")
    alice, bob = Conn("alice"), Conn("bob")
    await a.join(alice, room_id)
    await b.join(bob, room_id)
    await alice.wait({"type": "presence", "user": "bob", "state": "joined"})
    await asyncio.sleep(1.5)  # a few heartbeats: bob stays present meanwhile
    assert ("bob", "left") not in alice.presence()

    t0 = time.monotonic()
    await b.stop(graceful=False)  # no goodbye: as if the node were killed
    await alice.wait({"type": "presence", "user": "bob", "state": "left"}, within=6)
    gone_after = time.monotonic() - t0
    assert gone_after < 5.5, gone_after  # PRESENCE_TTL_S 3.5 s + sweep, on a loaded machine
    assert a.members_present(room_id) == ["alice"]


async def test_typing_crosses_nodes_and_expires(node: Node) -> None:
    a, b = await node("a", typing_ttl_s=0.6), await node("b", typing_ttl_s=0.6)
    room_id = await room_with(a, "alice", "bob")
    alice, bob = Conn("alice"), Conn("bob")
    await a.join(alice, room_id)
    await b.join(bob, room_id)
    await b.set_typing("bob", room_id, True)
    await alice.wait({"type": "typing", "user": "bob", "active": True})
    t0 = time.monotonic()
    await alice.wait({"type": "typing", "user": "bob", "active": False}, within=3)
    assert 0.5 < time.monotonic() - t0 < 2.5


async def test_the_conversation_survives_every_node(node: Node) -> None:
    a = await node("a")
    room_id = await room_with(a, "alice", "bob")
    await a.join(Conn("alice"), room_id)
    first = await a.post_message("alice", room_id, "one")
    second = await a.post_message("alice", room_id, "two")
    await a.stop()
    c = await node("c")  # a fresh node: everything comes from the store
    bob = Conn("bob")
    snap = await c.join(bob, room_id)
    assert [(m.id, m.content) for m in snap.messages] == [(first.id, "one"), (second.id, "two")]
    assert bob.frames[0]["messages"][1] == {"id": second.id, "user": "alice", "role": "user",
                                            "content": "two"}  # fmt: skip


async def test_a_redis_restart_mid_room(node: Node) -> None:
    server = RedisServer().start()
    try:
        a, b = await node("a", server.url), await node("b", server.url)
        room_id = await room_with(a, "alice", "bob")
        alice, bob = Conn("alice"), Conn("bob")
        await a.join(alice, room_id)
        await b.join(bob, room_id)
        await alice.wait({"type": "presence", "user": "bob", "state": "joined"})

        await asyncio.to_thread(server.restart, 0.3)
        deadline = time.monotonic() + 10
        while not (a.bus.connected and b.bus.connected):
            assert time.monotonic() < deadline, "a node stayed disconnected"
            await asyncio.sleep(0.05)
        assert a.bus.metrics.reconnects._value.get() == 1
        # a short outage (under the presence TTL): nobody flapped to `left`
        await asyncio.sleep(0.5)
        assert ("bob", "left") not in alice.presence()
        assert ("alice", "left") not in bob.presence()
        # both directions flow again
        m1 = await b.post_message("bob", room_id, "after restart")
        await alice.wait({"type": "message", "id": m1.id})
        m2 = await a.post_message("alice", room_id, "me too")
        await bob.wait({"type": "message", "id": m2.id})
        # and a member joining now on a third node sees both (presence re-announced)
        c = await node("c", server.url)
        carol_room = Conn("bob")
        snap = await c.join(carol_room, room_id)
        assert snap.members == ["alice", "bob"]
    finally:
        server.stop()


async def test_a_long_outage_ends_with_presence_restored(node: Node) -> None:
    server = RedisServer().start()
    try:
        cfg = {"presence_heartbeat_s": 0.2, "presence_ttl_s": 0.6}
        a, b = await node("a", server.url, **cfg), await node("b", server.url, **cfg)
        room_id = await room_with(a, "alice", "bob")
        alice, bob = Conn("alice"), Conn("bob")
        await a.join(alice, room_id)
        await b.join(bob, room_id)
        await alice.wait({"type": "presence", "user": "bob", "state": "joined"})
        server.stop()
        await asyncio.sleep(0.3)
        during = await b.post_message("bob", room_id, "said while the bus was down")
        # longer than the presence TTL: each side sees the other go (it cannot tell a dead
        # node from a dead bus) ...
        await alice.wait({"type": "presence", "user": "bob", "state": "left"}, within=5)
        await bob.wait({"type": "presence", "user": "alice", "state": "left"}, within=5)
        mark_a, mark_b = len(alice.frames), len(bob.frames)
        await asyncio.to_thread(server.start)
        # ... and come back once the bus is up again (re-announced on reconnect)
        await alice.wait({"type": "presence", "user": "bob", "state": "joined"}, 10, mark_a)
        await bob.wait({"type": "presence", "user": "alice", "state": "joined"}, 10, mark_b)
        await asyncio.sleep(0.5)
        assert alice.presence()[-1] == ("bob", "joined")
        assert bob.presence()[-1] == ("alice", "joined")
        assert a.members_present(room_id) == ["alice", "bob"]
        # the message the bus could not carry came from the store once it was back
        got = await alice.wait({"type": "message", "id": during.id}, within=5)
        assert got["content"] == "said while the bus was down"
        assert [m["id"] for m in alice.of("message")] == [during.id]
    finally:
        server.stop()


async def test_a_draining_node_hands_its_members_over_without_a_flicker(node: Node) -> None:
    a, b = await node("a"), await node("b")
    room_id = await room_with(a, "alice", "bob", "carol")
    alice, bob, carol = Conn("alice"), Conn("bob"), Conn("carol")
    await a.join(alice, room_id)
    await b.join(bob, room_id)
    await b.join(carol, room_id)
    await alice.wait({"type": "presence", "user": "carol", "state": "joined"})

    await b.drain()  # SIGTERM on b: its sockets close, clients reconnect elsewhere
    await b.leave_all(bob)
    await b.leave_all(carol)
    await asyncio.sleep(0.5)
    bob_again = Conn("bob")
    await a.join(bob_again, room_id)  # bob is back (on a) well within PRESENCE_TTL_S
    await b.stop()
    # carol never came back: she goes `left` when b's entries lapse; bob never flickers
    await alice.wait({"type": "presence", "user": "carol", "state": "left"}, within=6)
    await asyncio.sleep(0.3)
    assert ("bob", "left") not in alice.presence()
    assert a.members_present(room_id) == ["alice", "bob"]
