"""The in-process store forgets streams after their TTL, as DynamoDB's TTL would."""

from __future__ import annotations

import time

import pytest

from stream_service.store import StreamMeta
from stream_service.store.base import now_ms
from stream_service.store.memory import MemoryStore


def _meta(stream_id: str) -> StreamMeta:
    return StreamMeta(
        id=stream_id,
        owner="alice",
        node="n1",
        model="m",
        lease_until_ms=now_ms() + 10_000,
        completion_id="c1",
    )


async def test_streams_past_their_ttl_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore(ttl_s=120, max_batch=4)
    clock = [time.time()]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    await store.create(_meta("old"))
    assert await store.append("old", [(1, "status", b"{}")])
    clock[0] += 90
    await store.create(_meta("young"))  # a write 90 s later keeps its own TTL
    assert await store.append("old", [(2, "delta", b'{"text":"a"}')])  # and refreshes "old"
    clock[0] += 100
    await store.create(_meta("new"))  # sweeps: nothing has reached its TTL yet
    assert await store.get_meta("old") is not None
    assert await store.get_meta("young") is not None
    clock[0] += 121
    await store.create(_meta("newest"))
    assert await store.get_meta("old") is None
    assert await store.get_meta("young") is None
    assert (await store.read("old", 0)).events == []
    assert await store.get_meta("newest") is not None
