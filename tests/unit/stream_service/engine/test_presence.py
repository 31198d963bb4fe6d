"""ReaderPresence alone: limits per stream and per user (429 ``too_many_readers``), seats
given back once, and the heartbeats of readers of streams produced elsewhere."""

from __future__ import annotations

import asyncio

import pytest

from core.errors import RateLimited
from stream_service.engine.presence import ReaderPresence
from stream_service.store import StreamMeta
from stream_service.store.base import now_ms
from stream_service.store.memory import MemoryStore
from tests.unit.stream_service.engine.support import live_stream


def _presence(store: MemoryStore | None = None, heartbeat_s: float = 0.05) -> ReaderPresence:
    return ReaderPresence(store or MemoryStore(), per_stream=2, per_user=3, heartbeat_s=heartbeat_s)


def test_readers_beyond_the_per_stream_limit_get_a_429() -> None:
    presence = _presence()
    presence.enter("u", "s1", None)
    presence.enter("v", "s1", None)
    with pytest.raises(RateLimited) as refused:
        presence.enter("w", "s1", None)
    assert refused.value.status_code == 429
    assert refused.value.code == "too_many_readers"
    assert "of this stream" in refused.value.message and "limit is 2" in refused.value.message
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert presence.open_readers == 2  # the refused one holds nothing
    presence.enter("w", "s2", None)  # another stream is not affected


def test_readers_beyond_the_per_user_limit_get_a_429() -> None:
    presence = _presence()
    presence.enter("u", "s1", None)
    presence.enter("u", "s2", None)
    third = presence.enter("u", "s3", None)
    with pytest.raises(RateLimited) as refused:
        presence.enter("u", "s4", None)
    assert refused.value.code == "too_many_readers"
    assert "for this user" in refused.value.message and "limit is 3" in refused.value.message
    presence.enter("v", "s4", None)  # another user is not affected
    presence.leave(third)
    presence.enter("u", "s4", None)  # a seat given back is free at once


def test_leave_is_idempotent() -> None:
    presence = _presence()
    stream = live_stream("s1")
    first = presence.enter("u", "s1", stream)
    presence.enter("u", "s1", stream)
    assert stream.presence.local == 2
    presence.leave(first)
    presence.leave(first)
    presence.leave(first)
    assert stream.presence.local == 1
    assert presence.open_readers == 1
    presence.enter("u", "s1", stream)  # exactly one seat was given back
    with pytest.raises(RateLimited):
        presence.enter("u", "s1", stream)


def test_the_last_local_reader_leaving_starts_the_grace_window() -> None:
    presence = _presence()
    stream = live_stream("s1")
    seat = presence.enter("u", "s1", stream)
    before = stream.presence.detached_since
    presence.leave(seat)
    assert stream.presence.local == 0
    assert stream.presence.detached_since > before


async def test_remote_readers_heartbeat_the_record_until_they_leave() -> None:
    store = MemoryStore()
    await store.create(StreamMeta(id="s1", owner="u", node="elsewhere", model="m"))
    presence = _presence(store, heartbeat_s=0.05)
    await presence.start()
    try:
        seat = presence.enter("u", "s1", None)
        meta = await store.get_meta("s1")
        assert meta is not None and meta.reader_until_ms == 0  # not before it starts reading
        await presence.start_heartbeats(seat)
        await presence.start_heartbeats(seat)  # once per seat
        meta = await store.get_meta("s1")
        assert meta is not None and meta.reader_until_ms > now_ms()
        first = meta.reader_until_ms
        await asyncio.sleep(0.15)
        meta = await store.get_meta("s1")
        assert meta is not None and meta.reader_until_ms > first  # kept beating
        presence.leave(seat)
        presence.leave(seat)
        await asyncio.sleep(0.1)
        stopped_at = (await store.get_meta("s1")).reader_until_ms  # type: ignore[union-attr]
        await asyncio.sleep(0.15)
        meta = await store.get_meta("s1")
        assert meta is not None and meta.reader_until_ms == stopped_at  # no more beats
    finally:
        await presence.stop()


async def test_readers_on_the_producers_node_do_not_heartbeat() -> None:
    store = MemoryStore()
    await store.create(StreamMeta(id="s1", owner="u", node="n1", model="m"))
    presence = _presence(store)
    seat = presence.enter("u", "s1", live_stream("s1"))
    await presence.start_heartbeats(seat)
    meta = await store.get_meta("s1")
    assert meta is not None and meta.reader_until_ms == 0
