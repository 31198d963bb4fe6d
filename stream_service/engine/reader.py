"""Readers: one client's view of one stream, as an async iterator of event batches.

A reader yields lists of :class:`~.events.Event` in seq order (no gap, no repeat), or a
:class:`Signal`: ``PING`` when the connection has been silent for half of ``KEEPALIVE_S``,
``RECONNECT`` when the client must reconnect (this node drains). The transport renders
what it gets; the engine never sees a wire format, except that a caught-up reader on the
producer's node may park and have the producer write deltas to its :class:`~.events.Sink`.

Catch-up reads from the store are paged (``RESUME_PAGE_EVENTS``), so a resume of a long
stream never holds the whole remainder at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum

from stream_service.engine import errors
from stream_service.engine.events import Event, Format, Sink
from stream_service.engine.live import DirectReader, LiveStream
from stream_service.engine.presence import ReaderPresence, Seat
from stream_service.engine.types import ErrorCode, EventKind, StreamStatus
from stream_service.metrics import StreamMetrics
from stream_service.store import StreamStore
from stream_service.store.base import StoredEvent, now_ms

log = logging.getLogger("rtai.stream.reader")


class Signal(Enum):
    PING = "ping"
    RECONNECT = "reconnect"


Item = list[Event] | Signal


@dataclass(frozen=True, slots=True)
class ReadLimits:
    keepalive_s: float
    tail_interval_s: float
    page_events: int


def lost_event(seq: int) -> Event:
    return Event.make(seq, EventKind.ERROR, errors.producer_lost())


def is_reader_written_loss(event: StoredEvent) -> bool:
    return event[1] == "error" and f'"{ErrorCode.PRODUCER_LOST}"'.encode() in event[2]


class Readers:
    """Builds readers; owns nothing but its dependencies."""

    def __init__(
        self,
        store: StreamStore,
        presence: ReaderPresence,
        metrics: StreamMetrics,
        limits: ReadLimits,
        *,
        draining: Callable[[], bool],
    ) -> None:
        self.store = store
        self.presence = presence
        self.metrics = metrics
        self.limits = limits
        self._draining = draining

    # --- the producer's node ------------------------------------------------------------
    async def local(
        self, stream: LiveStream, after: int, fmt: Format, sink: Sink | None
    ) -> AsyncIterator[Item]:
        metrics = self.metrics
        metrics.connections.inc()
        replaying = after > 0  # a resume: count what it replays, by source
        if replaying:
            (metrics.resume_memory if after + 1 >= stream.base else metrics.resume_store).inc()
        half_keepalive = self.limits.keepalive_s / 2 * 0.9
        loop = asyncio.get_running_loop()
        timings = stream.timings
        last_sent = time.perf_counter()
        try:
            while True:
                if self._draining():
                    yield Signal.RECONNECT
                    return
                if after + 1 < stream.base:  # behind the memory window: a page from the store
                    stored = await self.store.read(stream.id, after, self.limits.page_events)
                    events = [Event.from_stored(e) for e in stored.events if e[0] < stream.base]
                    if not events or events[0].seq != after + 1:
                        # Events leave memory only once stored, so this cannot happen with a
                        # consistent store; never skip them: the client reconnects instead.
                        log.warning("stream %s: events after %d not in the store", stream.id, after)
                        yield Signal.RECONNECT
                        return
                    metrics.replayed_store.inc(len(events))
                    yield events
                    last_sent = time.perf_counter()
                    after = events[-1].seq
                    continue
                batch = stream.since(after)
                if batch:
                    if replaying:
                        metrics.replayed_memory.inc(len(batch))
                        replaying = False
                    if len(batch) > self.limits.page_events:
                        batch = batch[: self.limits.page_events]
                    yield batch
                    last_sent = time.perf_counter()
                    if timings.first_byte is None and timings.first_token is not None:
                        timings.first_byte = last_sent
                        metrics.stage_first_byte.observe(last_sent - timings.accepted)
                    after = batch[-1].seq
                    if batch[-1].terminal:
                        return
                    continue
                if stream.finished and after >= stream.last_seq:
                    if stream.lease_lost:
                        # Another node declared it lost (this node froze past LEASE_TTL_S):
                        # it has no ending of its own; a clean end would look complete.
                        yield [lost_event(after + 1)]
                    return
                if sink is not None and timings.first_byte is not None:
                    # Caught up: the producer writes the next deltas to this client itself
                    # until something else happens (see LiveStream.wake).
                    direct = DirectReader(sink, after, loop.create_future())
                    stream.park(fmt, direct)
                    try:
                        await direct.parked
                    finally:
                        stream.release(fmt, direct)
                    await sink.settle()
                    if direct.after != after:  # it was written to: when the last token came
                        after = direct.after
                        last_sent = max(last_sent, timings.last_token or 0.0)
                else:
                    await stream.wait()
                if after >= stream.last_seq and time.perf_counter() - last_sent >= half_keepalive:
                    yield Signal.PING
                    last_sent = time.perf_counter()
        finally:
            metrics.connections.dec()

    # --- any other node -----------------------------------------------------------------
    async def remote(self, stream_id: str, after: int, seat: Seat) -> AsyncIterator[Item]:
        """Tail a stream whose producer runs (or ran) on another node, from the store."""
        metrics = self.metrics
        metrics.connections.inc()
        if after:
            metrics.resume_store.inc()
        interval = self.limits.tail_interval_s
        half_keepalive = self.limits.keepalive_s / 2
        last_sent = time.monotonic()
        gap_waits = 0
        try:
            await self.presence.start_heartbeats(seat)
            while True:
                if self._draining():
                    yield Signal.RECONNECT
                    return
                stored = await self.store.read(stream_id, after, self.limits.page_events)
                events: list[Event] = []
                for raw in stored.events:
                    if raw[0] != after + len(events) + 1:
                        break  # a gap: the batch before it is not visible yet
                    events.append(Event.from_stored(raw))
                if events:
                    gap_waits = 0
                    metrics.replayed_store.inc(len(events))
                    yield events
                    last_sent = time.monotonic()
                    after = events[-1].seq
                    if events[-1].terminal:
                        return
                    continue
                meta = await self.store.get_meta(stream_id)
                if meta is None:
                    return
                if meta.status == StreamStatus.RUNNING:
                    if meta.lease_until_ms < now_ms():
                        await self.store.mark_lost(stream_id, now_ms())
                        continue
                    if time.monotonic() - last_sent >= half_keepalive:
                        yield Signal.PING
                        last_sent = time.monotonic()
                    await asyncio.sleep(interval)
                    continue
                if stored.events:  # a gap in a finished stream: give it a moment
                    gap_waits += 1
                    if gap_waits > 20:
                        return
                    await asyncio.sleep(interval)
                    continue
                tail = await self.last_stored(stream_id)
                if tail is not None and tail[0] > after:
                    # Stored between the read above and the status: the producer's final
                    # flush, then its status. Read them before anything else.
                    gap_waits += 1
                    if gap_waits > 20:
                        log.warning("stream %s: events after %d not readable", stream_id, after)
                        return
                    if gap_waits > 1:
                        await asyncio.sleep(interval)
                    continue
                failed = meta.status == StreamStatus.FAILED
                if tail is not None and tail[1] in ("done", "error"):
                    if failed and is_reader_written_loss(tail):
                        # The client may have seen live events its dead producer never
                        # stored, under the ids of the stored ending: end above its position.
                        yield [lost_event(after + 1)]
                    return  # otherwise it has everything, its ending included
                if failed:  # the producer died without an ending: store one, once
                    await self._store_lost_event(stream_id, tail)
                    continue
                return
        finally:
            metrics.connections.dec()

    async def lost_after(self, after: int) -> AsyncIterator[Item]:
        """A client that saw events its dead producer never stored: how the stream ended,
        numbered after what it has."""
        yield [lost_event(after + 1)]

    async def last_stored(self, stream_id: str) -> StoredEvent | None:
        last = await self.store.last_seq(stream_id)
        if last == 0:
            return None
        events = (await self.store.read(stream_id, last - 1, 1)).events
        return events[-1] if events else None

    async def _store_lost_event(self, stream_id: str, tail: StoredEvent | None) -> None:
        """Append the ``producer_lost`` ending (written only if absent: every reader on every
        node sees the same one)."""
        event = lost_event((tail[0] if tail else 0) + 1)
        await self.store.append(stream_id, [event.stored()])
