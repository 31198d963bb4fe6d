"""StoreWriter alone: batching, a batch retried after its first try landed, and a lease
another node took away (``on_lease_lost``)."""

from __future__ import annotations

import asyncio

from stream_service.engine.live import LiveStream
from stream_service.engine.store_writer import StoreWriter
from stream_service.engine.types import EventKind, StreamStatus
from stream_service.store import LeaseLost, StreamMeta
from stream_service.store.base import StoredEvent, now_ms
from stream_service.store.memory import MemoryStore
from tests.unit.stream_service.engine.support import live_stream, recording_store, until


def _writer(
    store: MemoryStore,
    streams: dict[str, LiveStream],
    lost: list[str] | None = None,
    interval_ms: int = 100,
) -> StoreWriter:
    return StoreWriter(
        store,
        node="n1",
        lease_ttl_s=5,
        interval_ms=interval_ms,
        workers=2,
        streams=streams.values,
        on_lease_lost=lambda s: (lost if lost is not None else []).append(s.id),
    )


def _fill(stream: LiveStream, deltas: int) -> None:
    if not stream.events:
        stream.append(EventKind.STATUS, {"state": "thinking"})
    for n in range(deltas):
        stream.append_delta(f" t{n}")


async def _seqs(store: MemoryStore, stream_id: str) -> list[int]:
    return [e[0] for e in (await store.read(stream_id, 0)).events]


async def test_events_go_in_batches_of_at_most_max_batch_each_written_once() -> None:
    store, ops = recording_store(max_batch=8)
    stream = live_stream()
    writer = _writer(store, {stream.id: stream})
    writer.track(stream)
    _fill(stream, 19)  # 20 events
    await writer.flush(stream)
    assert ops == ["create", "append", "append", "append"]  # the record, then 8 + 8 + 4
    assert await _seqs(store, stream.id) == list(range(1, 21))
    assert stream.flushed_seq == 20 and writer.stored(stream)
    ops.clear()
    await writer.flush(stream)  # nothing new: nothing written
    assert ops == []


async def test_the_workers_flush_on_their_tick_and_when_asked() -> None:
    store, ops = recording_store(max_batch=64)
    stream = live_stream()
    streams = {stream.id: stream}
    writer = _writer(store, streams, interval_ms=100)
    await writer.start()
    try:
        writer.track(stream)  # its record goes out at once
        await writer.idle(timeout=1)
        assert ops == ["create"]
        _fill(stream, 9)  # no one asks: the tick picks them up, in one batch
        await until(lambda: stream.flushed_seq == 10, 2)
        assert ops == ["create", "append"]
        _fill(stream, 5)
        writer.soon(stream)  # FLUSH_MAX_EVENTS reached: asked at once
        await writer.idle(timeout=1)
        assert stream.flushed_seq == 15
        assert ops == ["create", "append", "append"]
        assert await _seqs(store, stream.id) == list(range(1, 16))
    finally:
        await writer.stop()


class _LostReplies(MemoryStore):
    """A store whose first ``append`` lands but whose reply is lost (a timeout)."""

    def __init__(self) -> None:
        super().__init__(max_batch=8)
        self.fail_next = True

    async def append(self, stream_id: str, events: list[StoredEvent]) -> bool:
        written = await super().append(stream_id, events)
        if self.fail_next:
            self.fail_next = False
            raise TimeoutError("the reply was lost")
        return written


async def test_a_batch_retried_after_its_first_try_landed_is_not_written_twice() -> None:
    store = _LostReplies()
    stream = live_stream()
    lost: list[str] = []
    writer = _writer(store, {stream.id: stream}, lost)
    writer.track(stream)
    _fill(stream, 11)  # 12 events: batches at 1 and 9
    stream.status = StreamStatus.COMPLETED
    await writer.finish(stream)  # the final flush retries through the lost reply
    assert lost == []
    assert await _seqs(store, stream.id) == list(range(1, 13))  # each event once, in order
    meta = await store.get_meta(stream.id)
    assert meta is not None and meta.status == "completed" and meta.last_seq == 12


async def test_a_conflicting_batch_after_another_node_declared_the_stream_lost() -> None:
    store, _ = recording_store(max_batch=8)
    stream = live_stream()
    streams = {stream.id: stream}
    lost: list[str] = []
    writer = _writer(store, streams, lost)
    await writer.start()
    try:
        writer.track(stream)
        _fill(stream, 2)
        writer.soon(stream)
        await writer.idle(timeout=1)
        assert stream.flushed_seq == 3
        # another node saw the lease lapse: it marks the stream failed and stores the
        # producer_lost ending under the next id
        assert await store.mark_lost(stream.id, now_ms() + 60_000)
        await store.append(stream.id, [(4, "error", b'{"code":"producer_lost"}')])
        _fill(stream, 3)  # this producer's next batch starts at 4 too
        writer.soon(stream)
        await until(lambda: lost == [stream.id], 2)
        assert [e[1] for e in (await store.read(stream.id, 0)).events][-1] == "error"
        assert stream.flushed_seq == 3  # nothing of its own written over the ending
    finally:
        await writer.stop()


async def test_a_late_first_write_on_a_stream_declared_lost_reports_the_lost_lease() -> None:
    store, _ = recording_store()
    stream = live_stream()
    lost: list[str] = []
    writer = _writer(store, {stream.id: stream}, lost)
    # its record reached the store (the reply did not), and its lease lapsed elsewhere
    await store.create(StreamMeta(id=stream.id, owner="u", node="n1", model="m"))
    assert await store.mark_lost(stream.id, now_ms())
    await writer.start()
    try:
        writer.track(stream)
        await until(lambda: lost == [stream.id], 2)
    finally:
        await writer.stop()
    meta = await store.get_meta(stream.id)
    assert meta is not None and meta.status == "failed"  # not running again


async def test_finish_after_a_lost_lease_writes_nothing() -> None:
    store, ops = recording_store()
    stream = live_stream()
    writer = _writer(store, {stream.id: stream})
    writer.track(stream)
    _fill(stream, 2)
    await writer.flush(stream)
    stream.lease_lost = True
    _fill(stream, 2)
    ops.clear()
    await writer.finish(stream)
    assert ops == []
    assert not writer.stored(stream)  # forgotten


async def test_a_stream_that_ends_after_it_was_declared_lost_defers_to_the_store() -> None:
    """A node frozen past its lease (GC pause, SIGSTOP) thaws and its producer ends: its
    final write is refused, and from then on it answers from the store like every node."""
    store, _ = recording_store()
    stream = live_stream()
    writer = _writer(store, {stream.id: stream})
    writer.track(stream)
    _fill(stream, 1)
    await writer.flush(stream)
    assert await store.mark_lost(stream.id, now_ms() + 60_000)
    stream.status = StreamStatus.COMPLETED
    await asyncio.wait_for(writer.finish(stream), 5)  # no retry loop on LeaseLost
    meta = await store.get_meta(stream.id)
    assert meta is not None and meta.status == "failed"
    assert stream.lease_lost  # the engine no longer tells this stream's story from memory


async def test_lease_lost_is_raised_not_retried() -> None:
    store, _ = recording_store()
    stream = live_stream()
    writer = _writer(store, {stream.id: stream})
    await store.create(StreamMeta(id=stream.id, owner="u", node="other", model="m"))
    writer.track(stream)
    try:
        await asyncio.wait_for(writer.flush(stream, final=True), 2)
    except LeaseLost:
        pass
    else:
        raise AssertionError("a record owned by another node must raise LeaseLost")
