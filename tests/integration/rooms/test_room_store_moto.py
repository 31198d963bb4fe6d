"""The room store contract against moto's server over HTTP (the unit tests' cases, plus
two nodes appending to one room at once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import Settings
from stream_service.store.rooms_base import RoomLimits, RoomStore
from stream_service.store.rooms_dynamodb import DynamoRoomStore
from tests.unit.rooms.test_room_store import (  # the same contract, over HTTP
    LIMITS,
    MakeStore,
    rid,
    test_a_message_over_the_size_limit_is_refused_and_not_stored,
    test_a_room_expires_after_its_ttl,
    test_beyond_max_bytes_the_oldest_are_dropped,
    test_beyond_max_messages_the_oldest_are_dropped,
    test_conversation_keeps_order_ids_and_authors,
    test_created_room_has_its_creator_as_only_member,
    test_messages_to_a_missing_room_are_refused,
    test_only_members_add_members_and_the_room_has_a_size_limit,
    test_rooms_per_creator_are_limited_until_one_expires,
    test_running_replies_are_listed_until_removed,
)

__all__ = [
    "test_a_message_over_the_size_limit_is_refused_and_not_stored",
    "test_a_room_expires_after_its_ttl",
    "test_beyond_max_bytes_the_oldest_are_dropped",
    "test_beyond_max_messages_the_oldest_are_dropped",
    "test_conversation_keeps_order_ids_and_authors",
    "test_created_room_has_its_creator_as_only_member",
    "test_messages_to_a_missing_room_are_refused",
    "test_only_members_add_members_and_the_room_has_a_size_limit",
    "test_rooms_per_creator_are_limited_until_one_expires",
    "test_running_replies_are_listed_until_removed",
]


@pytest.fixture
def make_store(aws_env: dict[str, str]) -> Iterator[MakeStore]:
    settings = Settings(
        dynamodb_endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
        streams_table=f"rooms-{uuid.uuid4().hex[:6]}",
    )
    client = clients.dynamodb(settings)
    ensure_tables(client, settings)
    made: list[DynamoRoomStore] = []

    def make(limits: RoomLimits) -> RoomStore:
        made.append(DynamoRoomStore(clients.dynamodb(settings), settings.streams_table, limits))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> RoomStore:
    return make_store(LIMITS)


async def test_two_nodes_appending_at_once_get_distinct_ids_and_the_bounds_hold(
    make_store: MakeStore,
) -> None:
    limits = RoomLimits(max_messages=10, max_bytes=10_000, max_message_bytes=100)
    node_a, node_b = make_store(limits), make_store(limits)
    room_id = rid()
    await node_a.create(room_id, "alice")
    sent = await asyncio.gather(
        *(
            (node_a if i % 2 else node_b).append(room_id, "alice", "user", f"n{i}")
            for i in range(30)
        )
    )
    assert len({m.id for m in sent}) == 30
    kept = await node_b.messages(room_id)
    newest = sorted(sent, key=lambda m: m.seq)[-10:]
    assert [m.id for m in kept] == [m.id for m in newest]
