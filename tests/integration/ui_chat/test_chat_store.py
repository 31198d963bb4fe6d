"""The chat store contract (chat id -> newest reply, bound to its user), in memory and in
DynamoDB (moto's server over HTTP, the streams table)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import Settings
from stream_service.store.chats_base import ChatReply, ChatStore
from stream_service.store.chats_dynamodb import DynamoChatStore
from stream_service.store.chats_memory import MemoryChatStore

MakeStore = Callable[[int], ChatStore]


@pytest.fixture(params=["memory", "dynamodb"])
def make_store(request: pytest.FixtureRequest, settings: Settings) -> MakeStore:
    if request.param == "memory":
        return lambda ttl_s: MemoryChatStore(ttl_s=ttl_s)
    table = f"chats-{uuid.uuid4().hex[:8]}"
    named = settings.model_copy(update={"streams_table": table})
    client = clients.dynamodb(named)
    ensure_tables(client, named)
    return lambda ttl_s: DynamoChatStore(client, table, ttl_s=ttl_s)


def reply(stream: str, at_ms: int) -> ChatReply:
    return ChatReply(stream_id=stream, message_id=f"m-{stream}", created_ms=at_ms)


async def test_the_newest_reply_of_a_users_chat(make_store: MakeStore) -> None:
    store = make_store(3600)
    assert await store.newest("alice", "c1") is None
    await store.bind("alice", "c1", reply("s1", 1000))
    await store.bind("alice", "c1", reply("s2", 2000))
    assert await store.newest("alice", "c1") == reply("s2", 2000)
    await store.bind("alice", "c1", reply("s0", 1500))  # an older one arriving late
    assert await store.newest("alice", "c1") == reply("s2", 2000)


async def test_a_chat_id_is_bound_to_its_user(make_store: MakeStore) -> None:
    store = make_store(3600)
    await store.bind("alice", "shared-id", reply("a1", 1000))
    assert await store.newest("bob", "shared-id") is None
    await store.bind("bob", "shared-id", reply("b1", 5000))  # bob's own chat, same id
    assert await store.newest("alice", "shared-id") == reply("a1", 1000)
    assert await store.newest("bob", "shared-id") == reply("b1", 5000)


async def test_two_binds_at_once_leave_the_newest(make_store: MakeStore) -> None:
    store = make_store(3600)
    await asyncio.gather(*(store.bind("alice", "c2", reply(f"s{i}", 1000 + i)) for i in range(8)))
    assert await store.newest("alice", "c2") == reply("s7", 1007)


async def test_a_record_expires_with_the_streams_ttl(make_store: MakeStore) -> None:
    store = make_store(1)
    await store.bind("alice", "c3", reply("s1", 1000))
    await asyncio.sleep(2.2)  # DynamoDB may keep an expired item a while: it reads as absent
    assert await store.newest("alice", "c3") is None
