"""The room store contract (store/rooms_base.py), for the memory backend and for DynamoDB
through moto's in-process mock. tests/integration/rooms runs the same tests against moto's
server over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import boto3
import pytest
from moto import mock_aws

from core.aws.tables import ensure_tables
from core.settings import Settings
from stream_service.store.rooms_base import (
    MessageTooLarge,
    RoomFull,
    RoomLimits,
    RoomNotFound,
    RoomStore,
    TooManyRooms,
)
from stream_service.store.rooms_dynamodb import DynamoRoomStore
from stream_service.store.rooms_memory import MemoryRoomStore

MakeStore = Callable[[RoomLimits], RoomStore]
LIMITS = RoomLimits(max_members=3, max_messages=4, max_bytes=100, max_message_bytes=40)


@pytest.fixture(params=["memory", "dynamodb"])
def make_store(request: pytest.FixtureRequest) -> Iterator[MakeStore]:
    if request.param == "memory":
        yield MemoryRoomStore
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        table = f"rooms-{uuid.uuid4().hex[:6]}"
        ensure_tables(client, Settings(streams_table=table, jobs_table=f"{table}-jobs"))
        made: list[DynamoRoomStore] = []

        def make(limits: RoomLimits) -> RoomStore:
            made.append(DynamoRoomStore(client, table, limits))
            return made[-1]

        yield make
        for store in made:
            store.close()


@pytest.fixture
def store(make_store: MakeStore) -> RoomStore:
    return make_store(LIMITS)


def rid() -> str:
    return f"rm_{uuid.uuid4().hex}"


async def test_created_room_has_its_creator_as_only_member(store: RoomStore) -> None:
    room_id = rid()
    room = await store.create(room_id, "alice")
    assert room.members == {"alice"} and room.created_by == "alice"
    got = await store.get(room_id)
    assert got is not None and got.members == {"alice"}
    assert await store.get(rid()) is None


async def test_only_members_add_members_and_the_room_has_a_size_limit(store: RoomStore) -> None:
    room_id = rid()
    await store.create(room_id, "alice")
    with pytest.raises(RoomNotFound):
        await store.add_member(room_id, "mallory", "mallory")  # not a member: "no such room"
    with pytest.raises(RoomNotFound):
        await store.add_member(rid(), "alice", "bob")
    room = await store.add_member(room_id, "alice", "bob")
    assert room.members == {"alice", "bob"}
    room = await store.add_member(room_id, "bob", "carol")  # any member may add
    assert room.members == {"alice", "bob", "carol"}
    with pytest.raises(RoomFull):
        await store.add_member(room_id, "alice", "dave")  # max_members = 3
    room = await store.add_member(room_id, "alice", "bob")  # already a member: no-op
    assert room.members == {"alice", "bob", "carol"}
    got = await store.get(room_id)
    assert got is not None and got.members == {"alice", "bob", "carol"}


async def test_conversation_keeps_order_ids_and_authors(store: RoomStore) -> None:
    room_id = rid()
    await store.create(room_id, "alice")
    first = await store.append(room_id, "alice", "user", "hello")
    second = await store.append(room_id, "assistant", "assistant", "hi there, é")
    assert first.id < second.id
    assert [m.public() for m in await store.messages(room_id)] == [
        {"id": first.id, "user": "alice", "role": "user", "content": "hello"},
        {"id": second.id, "user": "assistant", "role": "assistant", "content": "hi there, é"},
    ]
    assert await store.messages(rid()) == []


async def test_messages_to_a_missing_room_are_refused(store: RoomStore) -> None:
    with pytest.raises(RoomNotFound):
        await store.append(rid(), "alice", "user", "hi")


async def test_a_message_over_the_size_limit_is_refused_and_not_stored(store: RoomStore) -> None:
    room_id = rid()
    await store.create(room_id, "alice")
    with pytest.raises(MessageTooLarge):
        await store.append(room_id, "alice", "user", "x" * 41)
    with pytest.raises(MessageTooLarge):  # bytes, not characters: 14 x 3 bytes
        await store.append(room_id, "alice", "user", "€" * 14)
    await store.append(room_id, "alice", "user", "x" * 40)
    assert [len(m.content) for m in await store.messages(room_id)] == [40]


async def test_beyond_max_messages_the_oldest_are_dropped(store: RoomStore) -> None:
    room_id = rid()
    await store.create(room_id, "alice")
    sent = [await store.append(room_id, "alice", "user", f"m{i}") for i in range(7)]
    kept = await store.messages(room_id)
    assert [m.content for m in kept] == ["m3", "m4", "m5", "m6"]
    assert [m.id for m in kept] == [m.id for m in sent[3:]]


async def test_beyond_max_bytes_the_oldest_are_dropped(store: RoomStore) -> None:
    room_id = rid()
    await store.create(room_id, "alice")
    for ch in "abc":
        await store.append(room_id, "alice", "user", ch * 40)  # 120 bytes > 100
    kept = await store.messages(room_id)
    assert [m.content[0] for m in kept] == ["b", "c"]
    await store.append(room_id, "alice", "user", "d" * 30)  # 110 bytes: drop "b"
    assert [m.content[0] for m in await store.messages(room_id)] == ["c", "d"]


async def test_running_replies_are_listed_until_removed(store: RoomStore) -> None:
    room_id = rid()
    await store.create(room_id, "alice")
    await store.add_reply(room_id, "s1", "alice")
    await asyncio.sleep(0.002)
    await store.add_reply(room_id, "s2", "bob")
    assert [r.stream_id for r in await store.replies(room_id)] == ["s1", "s2"]
    await store.remove_reply(room_id, "s1")
    assert [(r.stream_id, r.user) for r in await store.replies(room_id)] == [("s2", "bob")]
    await store.remove_reply(room_id, "missing")  # no error


async def test_a_room_expires_after_its_ttl(make_store: MakeStore) -> None:
    store = make_store(RoomLimits(ttl_s=1, reply_ttl_s=1))
    room_id = rid()
    await store.create(room_id, "alice")
    await store.append(room_id, "alice", "user", "hi")
    await store.add_reply(room_id, "s1", "alice")
    await asyncio.sleep(2.1)
    assert await store.get(room_id) is None
    assert await store.messages(room_id) == []
    assert await store.replies(room_id) == []
    with pytest.raises(RoomNotFound):
        await store.add_member(room_id, "alice", "bob")
    with pytest.raises(RoomNotFound):
        await store.append(room_id, "alice", "user", "late")


async def test_rooms_per_creator_are_limited_until_one_expires(make_store: MakeStore) -> None:
    store = make_store(RoomLimits(ttl_s=2, max_rooms_per_user=2))  # alive >= 1 s
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    await store.create(rid(), alice)
    await store.create(rid(), alice)
    with pytest.raises(TooManyRooms) as refused:
        await store.create(rid(), alice)
    assert refused.value.code == "too_many_rooms"
    await store.create(rid(), "bob")  # per user
    await asyncio.sleep(2.1)  # alice's rooms expire: they stop counting
    await store.create(rid(), alice)
    await store.create(rid(), alice)
    with pytest.raises(TooManyRooms):
        await store.create(rid(), alice)
