"""Both store backends keep the same contract (store/base.py): the DynamoDB one against
moto's server over HTTP, the memory one in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import Settings
from stream_service.store import Holder, LeaseLost, StreamMeta, StreamStore
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


async def test_admission_is_one_write_and_counts_exactly(store: StreamStore) -> None:
    now = now_ms()
    a, b, c = (Holder(sid, "n1", now + i) for i, sid in enumerate("abc"))
    assert (await store.admit("bob", a, 2)).admitted
    assert (await store.admit("bob", a, 2)).admitted  # a retried write changes nothing
    assert (await store.admit("bob", b, 2)).admitted
    refused = await store.admit("bob", c, 2)
    assert not refused.admitted
    assert {h.stream_id for h in refused.holders} == {"a", "b"}  # who holds the places
    assert {h.node for h in refused.holders} == {"n1"}
    assert await store.release("bob", "a")
    assert not await store.release("bob", "a")  # once
    assert (await store.admit("bob", c, 2)).admitted
    # replace: c's place goes to d, the count is unchanged; c's own release is then a no-op
    d = Holder("d", "n2", now + 9)
    assert await store.replace("bob", "c", d)
    assert not await store.replace("bob", "c", Holder("e", "n1", now))
    assert not await store.release("bob", "c")
    assert not (await store.admit("bob", Holder("e", "n1", now), 2)).admitted
    assert await store.evict("bob", ["d", "zzz"]) == 1
    assert (await store.admit("bob", Holder("e", "n1", now), 2)).admitted


async def test_node_heartbeats(store: StreamStore) -> None:
    now = now_ms()
    await store.node_heartbeat("alive", now + 10_000)
    await store.node_heartbeat("dead", now - 1)
    assert await store.live_nodes(["alive", "dead", "unknown"], now) == {"alive"}


async def test_a_late_first_write_never_revives_a_lost_stream(store: StreamStore) -> None:
    meta = _meta("s5", lease_ms=-1)
    await store.create(meta)
    await store.create(meta)  # a retry while it runs: fine
    assert await store.mark_lost("s5", now_ms())
    with pytest.raises(LeaseLost):
        await store.create(meta)
    stored = await store.get_meta("s5")
    assert stored is not None
    assert stored.status == "failed"


async def test_reads_are_paged(store: StreamStore) -> None:
    await store.create(_meta("s6"))
    for first in range(1, 40, 4):  # batches of 4 (max_batch)
        await store.append("s6", [(n, "delta", b'{"text":"x"}') for n in range(first, first + 4)])
    page = await store.read("s6", 5, limit=8)
    assert page.more
    assert 8 <= len(page.events) < 40 - 5
    assert [e[0] for e in page.events] == list(range(6, 6 + len(page.events)))
    rest = await store.read("s6", page.events[-1][0])
    assert [e[0] for e in page.events + rest.events] == list(range(6, 41))
