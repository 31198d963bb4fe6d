"""Both store backends keep the same contract (store/base.py): the DynamoDB one against
moto's server over HTTP, the memory one in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import Settings
from stream_service.store import LeaseLost, Slot, StreamMeta, StreamStore
from stream_service.store.base import now_ms
from stream_service.store.dynamodb import DynamoStreamStore
from stream_service.store.memory import MemoryStore


@pytest.fixture(params=["memory", "dynamodb"])
async def store(
    request: pytest.FixtureRequest, aws_env: dict[str, str]
) -> AsyncIterator[StreamStore]:
    if request.param == "memory":
        yield MemoryStore(ttl_s=60, max_batch=4)
        return
    settings = Settings(
        dynamodb_endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
        streams_table=f"contract-{uuid.uuid4().hex[:6]}",
    )
    ensure_tables(clients.dynamodb(settings), settings)
    backend = DynamoStreamStore(
        clients.dynamodb(settings), settings.streams_table, ttl_s=60, max_batch=4
    )
    yield backend
    backend.close()


def _meta(stream_id: str, node: str = "n1", lease_ms: int = 10_000) -> StreamMeta:
    return StreamMeta(
        id=stream_id,
        owner="alice",
        node=node,
        model="m",
        lease_until_ms=now_ms() + lease_ms,
        completion_id="c1",
    )


async def test_append_is_idempotent_and_read_is_ordered(store: StreamStore) -> None:
    await store.create(_meta("s1"))
    assert await store.append("s1", [(1, "status", b"{}"), (2, "delta", b'{"text":"a"}')])
    assert not await store.append("s1", [(1, "status", b"{}"), (2, "delta", b'{"text":"a"}')])
    assert await store.append("s1", [(3, "delta", b'{"text":"b"}'), (4, "done", b"{}")])
    assert [e[0] for e in (await store.read("s1", 0)).events] == [1, 2, 3, 4]
    assert [e[0] for e in (await store.read("s1", 2)).events] == [3, 4]
    assert [e[0] for e in (await store.read("s1", 3)).events] == [4]
    assert await store.last_seq("s1") == 4
    assert (await store.read("nope", 0)).events == []


async def test_leases_belong_to_their_node(store: StreamStore) -> None:
    await store.create(_meta("s2", lease_ms=-1))
    with pytest.raises(LeaseLost):
        await store.heartbeat("s2", "other-node", now_ms() + 5000, 0)
    assert await store.mark_lost("s2", now_ms())
    assert not await store.mark_lost("s2", now_ms())  # decided once
    with pytest.raises(LeaseLost):  # the zombie learns it
        await store.finish("s2", "n1", "completed", 0)
    meta = await store.get_meta("s2")
    assert meta is not None
    assert meta.status == "failed"


async def test_cancel_before_the_record_exists_survives_its_creation(store: StreamStore) -> None:
    await store.request_cancel("s3")
    await store.create(_meta("s3"))
    polled = await store.poll(["s3"])
    assert polled["s3"].cancel
    result = await store.heartbeat("s3", "n1", now_ms() + 5000, 0)
    assert result.cancel


async def test_reader_heartbeats_and_finish(store: StreamStore) -> None:
    await store.create(_meta("s4"))
    until = now_ms() + 3000
    await store.touch_reader("s4", until)
    assert (await store.poll(["s4"]))["s4"].reader_until_ms == until
    await store.finish("s4", "n1", "completed", 7)
    meta = await store.get_meta("s4")
    assert meta is not None
    assert (meta.status, meta.last_seq, meta.owner, meta.completion_id) == (
        "completed",
        7,
        "alice",
        "c1",
    )


async def test_slots_are_leases(store: StreamStore) -> None:
    now = now_ms()
    assert await store.claim_slot("bob", Slot(0, "a", now + 10_000, now), now)
    assert not await store.claim_slot("bob", Slot(0, "b", now + 10_000, now), now)  # taken
    assert await store.claim_slot(
        "bob", Slot(0, "b", now + 10_000, now), now, expect_stream="a"
    )  # replace
    assert await store.claim_slot("bob", Slot(1, "c", now - 1, now), now)
    assert await store.claim_slot("bob", Slot(1, "d", now + 10_000, now), now)  # lapsed lease
    await store.release_slot("bob", 0, "a")  # not a's any more: no effect
    assert {(s.index, s.stream_id) for s in await store.list_slots("bob")} == {(0, "b"), (1, "d")}
    await store.release_slot("bob", 0, "b")
    assert {s.stream_id for s in await store.list_slots("bob")} == {"d"}
