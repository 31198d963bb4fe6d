"""The room service on one node (memory bus, memory store): membership, join snapshot,
presence, messages, typing expiry, room replies, slow members."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stream_service.rooms.bus.memory import MemoryBus
from stream_service.rooms.config import RoomSettings
from stream_service.rooms.members import Member
from stream_service.rooms.service import RoomService
from stream_service.store.rooms_base import MessageTooLarge, RoomLimits, RoomNotFound
from stream_service.store.rooms_memory import MemoryRoomStore
from tests.unit.rooms.conns import Conn

CONFIG = RoomSettings(
    typing_ttl_s=1.0, presence_heartbeat_s=0.1, presence_ttl_s=0.35, presence_sync_ms=0
)


@pytest.fixture
async def rooms() -> AsyncIterator[RoomService]:
    service = RoomService(MemoryRoomStore(RoomLimits(max_message_bytes=1000)),
                          MemoryBus("n1"), CONFIG)  # fmt: skip
    await service.start()
    yield service
    await service.stop()


async def room_with(rooms: RoomService, *users: str) -> str:
    room = await rooms.create_room(users[0])
    for user in users[1:]:
        await rooms.add_member(users[0], room.id, user)
    return room.id


async def test_room_ids_are_unguessable_and_the_creator_is_the_first_member(
    rooms: RoomService,
) -> None:
    a, b = await rooms.create_room("alice"), await rooms.create_room("alice")
    assert a.id != b.id and len(a.id) >= 20
    assert a.members == {"alice"}


async def test_non_members_cannot_join_add_post_or_type(rooms: RoomService) -> None:
    room_id = await room_with(rooms, "alice")
    mallory = Conn("mallory")
    with pytest.raises(RoomNotFound):
        await rooms.join(mallory, room_id)
    with pytest.raises(RoomNotFound):
        await rooms.join(mallory, "rm_does_not_exist")
    with pytest.raises(RoomNotFound):
        await rooms.add_member("mallory", room_id, "mallory")
    with pytest.raises(RoomNotFound):
        await rooms.post_message("mallory", room_id, "hi")
    with pytest.raises(RoomNotFound):
        await rooms.set_typing("mallory", room_id, True)
    assert mallory.frames == []
    assert rooms.members_present(room_id) == []


async def test_joined_then_presence_diffs_one_member_per_user(rooms: RoomService) -> None:
    room_id = await room_with(rooms, "alice", "bob")
    alice, bob1, bob2 = Conn("alice"), Conn("bob"), Conn("bob")
    snap = await rooms.join(alice, room_id)
    assert snap.members == ["alice"]
    assert alice.frames == [
        {"type": "joined", "room": room_id, "members": ["alice"], "messages": [], "streams": []}
    ]
    await rooms.join(bob1, room_id)
    assert bob1.of("joined")[0]["members"] == ["alice", "bob"]
    assert alice.presence() == [("bob", "joined")]
    await rooms.join(bob2, room_id)  # a second connection of bob: no news
    await rooms.leave(bob1, room_id)
    assert alice.presence() == [("bob", "joined")]
    assert await rooms.leave_all(bob2) == [room_id]  # bob's last connection goes
    assert alice.presence() == [("bob", "joined"), ("bob", "left")]
    assert bob1.presence() == [] and bob2.presence() == []


async def test_messages_reach_every_member_and_are_in_joined_later(rooms: RoomService) -> None:
    room_id = await room_with(rooms, "alice", "bob")
    alice, bob = Conn("alice"), Conn("bob")
    await rooms.join(alice, room_id)
    await rooms.join(bob, room_id)
    sent = await rooms.post_message("bob", room_id, "hello all")
    expected = {"type": "message", "room": room_id, "id": sent.id, "user": "bob",
                "role": "user", "content": "hello all"}  # fmt: skip
    assert alice.of("message") == [expected] and bob.of("message") == [expected]
    with pytest.raises(MessageTooLarge):
        await rooms.post_message("bob", room_id, "x" * 1001)
    await rooms.leave_all(bob)
    later = Conn("bob")
    snap = await rooms.join(later, room_id)
    assert [m.public() for m in snap.messages] == [
        {"id": sent.id, "user": "bob", "role": "user", "content": "hello all"}
    ]


async def test_typing_expires_without_a_refresh(rooms: RoomService) -> None:
    room_id = await room_with(rooms, "alice", "bob")
    alice, bob = Conn("alice"), Conn("bob")
    await rooms.join(alice, room_id)
    await rooms.join(bob, room_id)
    for _ in range(15):  # refreshed every 0.1 s for 1.5 s (TYPING_TTL_S = 1.0)
        await rooms.set_typing("bob", room_id, True)
        await asyncio.sleep(0.1)
    assert alice.typing() == [("bob", True)]
    assert bob.typing() == []  # nobody is told about their own typing
    await alice.wait({"type": "typing", "user": "bob", "active": False}, within=4)
    assert alice.typing() == [("bob", True), ("bob", False)]
    # stopping explicitly, and a message ends typing too
    await rooms.set_typing("bob", room_id, True)
    await rooms.set_typing("bob", room_id, False)
    await rooms.set_typing("bob", room_id, True)
    await rooms.post_message("bob", room_id, "done typing")
    assert alice.typing()[-4:] == [("bob", True), ("bob", False), ("bob", True), ("bob", False)]


async def test_a_new_joiner_sees_who_is_typing(rooms: RoomService) -> None:
    room_id = await room_with(rooms, "alice", "bob")
    bob = Conn("bob")
    await rooms.join(bob, room_id)
    await rooms.set_typing("bob", room_id, True)
    alice = Conn("alice")
    await rooms.join(alice, room_id)
    assert [f["type"] for f in alice.frames] == ["joined", "typing"]
    assert alice.typing() == [("bob", True)]


async def test_room_replies_go_live_to_every_member_and_end_as_a_message(
    rooms: RoomService,
) -> None:
    room_id = await room_with(rooms, "alice", "bob")
    running = {"s1": 2}

    async def status(stream_id: str) -> int | None:
        return running.get(stream_id)

    rooms.set_reply_status(status)
    alice = Conn("alice")
    await rooms.join(alice, room_id)
    await rooms.reply_started(room_id, "s1", "alice")
    await rooms.reply_started(room_id, "s-gone", "alice")  # its producer is gone
    frame = b'{"type":"delta","stream_id":"s1","seq":3,"text":"Hi"}'
    await rooms.publish_reply_event(room_id, "s1", 3, frame)
    assert alice.of("delta") == [{"type": "delta", "stream_id": "s1", "seq": 3, "text": "Hi"}]
    bob = Conn("bob")
    snap = await rooms.join(bob, room_id)
    assert snap.streams == [("s1", 2)]  # only replies still running, with their last seq
    (message,) = await rooms.reply_finished(room_id, "s1", "Hi there")
    for conn in (alice, bob):
        assert conn.of("message")[-1] == {"type": "message", "room": room_id, "id": message.id,
                                          "user": "assistant", "role": "assistant",
                                          "content": "Hi there", "stream_id": "s1"}  # fmt: skip
    running.clear()
    later = Conn("bob")
    snap = await rooms.join(later, room_id)
    assert snap.streams == []
    assert [m.role for m in snap.messages] == ["assistant"]


class RacingStore(MemoryRoomStore):
    """Something is published while a joiner reads its backlog."""

    def __init__(self) -> None:
        super().__init__(RoomLimits())
        self.during_read: list[object] = []
        self.service: RoomService | None = None

    async def messages(self, room_id: str):  # type: ignore[no-untyped-def]
        assert self.service is not None
        svc = self.service
        if self.during_read:
            self.during_read.clear()
            await svc.post_message("alice", room_id, "posted during the read")
            await svc.publish_reply_event(room_id, "s1", 5, b'{"type":"delta","seq":5}')
            await svc.publish_reply_event(room_id, "s1", 6, b'{"type":"delta","seq":6}')
        result = await super().messages(room_id)
        if self.service is not None and hasattr(self, "after"):
            await svc.post_message("alice", room_id, "posted after the read")
        return result


async def test_join_subscribes_before_reading_and_drops_duplicates() -> None:
    store = RacingStore()
    rooms = RoomService(store, MemoryBus("n1"), CONFIG)
    store.service = rooms

    async def status(stream_id: str) -> int | None:
        return 5  # the reply's last stored seq when joined was built

    rooms.set_reply_status(status)
    await rooms.start()
    try:
        room_id = await room_with(rooms, "alice", "bob")
        await rooms.reply_started(room_id, "s1", "alice")
        store.during_read.append(True)
        store.after = True  # type: ignore[attr-defined]
        bob = Conn("bob")
        snap = await rooms.join(bob, room_id)
        contents = [m.content for m in snap.messages]
        assert contents == ["posted during the read"]
        assert bob.frames[0]["type"] == "joined"
        rest = bob.frames[1:]
        # the message in `joined` is not sent again; the one after the read is sent once;
        # the reply event at seq 5 (in joined's last_seq) is dropped, seq 6 is delivered.
        assert [f.get("content") or f["seq"] for f in rest] == [6, "posted after the read"]
    finally:
        await rooms.stop()


async def test_a_member_whose_buffer_is_full_is_reported(rooms: RoomService) -> None:
    overflowed: list[Member] = []
    rooms.set_overflow_hook(overflowed.append)
    room_id = await room_with(rooms, "alice", "bob")
    slow, fast = Conn("alice", capacity=2), Conn("bob")
    await rooms.join(slow, room_id)
    await rooms.join(fast, room_id)  # slow gets presence bob joined: 2 frames, full
    await rooms.post_message("bob", room_id, "one")
    assert overflowed == [slow]
    assert len(fast.of("message")) == 1
    assert rooms.metrics.overflows._value.get() == 1


async def test_health_reports_the_bus_and_local_rooms(rooms: RoomService) -> None:
    room_id = await room_with(rooms, "alice")
    await rooms.join(Conn("alice"), room_id)
    health = rooms.health()
    assert health["rooms"] == 1 and health["connections"] == 1
    assert health["bus"] == {"kind": "memory", "state": "connected", "outages": 0,
                             "down_for_s": 0.0}  # fmt: skip


async def test_a_message_the_bus_lost_is_delivered_from_the_store_once() -> None:
    store = MemoryRoomStore(RoomLimits())
    config = RoomSettings(room_repair_delay_s=0.1, presence_sync_ms=0)
    rooms = RoomService(store, MemoryBus("n1"), config)
    await rooms.start()
    try:
        room_id = await room_with(rooms, "alice", "bob")
        alice, bob = Conn("alice"), Conn("bob")
        await rooms.join(alice, room_id)
        await rooms.join(bob, room_id)
        lost = await store.append(room_id, "bob", "user", "stored, never published")
        after = await rooms.post_message("bob", room_id, "the next one")
        assert [m["id"] for m in alice.of("message")] == [after.id]
        await alice.wait({"type": "message", "id": lost.id}, within=3)
        await asyncio.sleep(0.3)
        assert [m["id"] for m in alice.of("message")] == [after.id, lost.id]
        assert rooms.metrics.repaired._value.get() == 1

        # a later joiner's `joined` shows a lost message: the others get it now, it once
        lost2 = await store.append(room_id, "bob", "user", "lost again")
        carol_bob = Conn("bob")
        snap = await rooms.join(carol_bob, room_id)
        assert lost2.id in [m.id for m in snap.messages]
        assert alice.of("message")[-1]["id"] == lost2.id
        assert carol_bob.of("message") == []
        await asyncio.sleep(0.3)
        assert [m["id"] for m in alice.of("message")].count(lost2.id) == 1
    finally:
        await rooms.stop()
