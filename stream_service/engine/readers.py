"""Readers: a client's event stream, from memory on the producer's node, else from the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from core.errors import ServiceUnavailable
from stream_service.engine.base import LOST_MESSAGE, EngineBase, beyond, log, not_found
from stream_service.engine.events import PING, TERMINAL, Event, StreamInfo, retry_frame
from stream_service.engine.live import DirectReader, LiveStream
from stream_service.sse import AbortStream, Outlet
from stream_service.store import StreamMeta
from stream_service.store.base import StoredEvent, now_ms


class Readers(EngineBase):
    # --- readers -------------------------------------------------------------------------
    async def open(
        self,
        owner: str,
        stream_id: str,
        after: int,
        openai_format: bool,
        wait_s: float = 0.0,
        outlet: Outlet | None = None,
    ) -> AsyncIterator[bytes]:
        """Check access and position, then return the event byte stream (404/400 raise first).
        With ``outlet`` (the response's), a reader on the producer's node gets new deltas
        written by the producer directly once it is caught up."""
        if self.draining:
            raise ServiceUnavailable(
                "This node is draining; reconnect.", code="draining", headers={"Retry-After": "1"}
            )
        stream = self.live.get(stream_id)
        # A producer that lost its lease wrote no ending: the store has the stream's story.
        if stream is not None and stream.admitted and stream.status != "lease_lost":
            if stream.owner != owner:
                raise not_found(stream_id)
            if after > stream.last_seq:
                raise beyond(after, stream.last_seq)
            info = stream.info if openai_format else None
            return self._local_reader(stream, after, info, outlet)
        meta = await self._owned_meta(owner, stream_id, wait_s)
        info = (
            StreamInfo(meta.completion_id, meta.model, meta.created_ms // 1000, meta.include_usage)
            if openai_format
            else None
        )
        if meta.status != "running":
            last = await self.store.last_seq(stream_id)
            if after > last:
                if meta.status != "failed":
                    raise beyond(after, last)
                # The client saw events its dead producer never stored: tell it how the
                # stream ended, numbered after what it has.
                return self._lost_after(after, info)
        return self._remote_reader(meta, after, info)

    async def _lost_after(self, after: int, info: StreamInfo | None) -> AsyncIterator[bytes]:
        yield self._retry_hint(info)
        yield _lost_event(after + 1).render(info)

    async def _local_reader(
        self, stream: LiveStream, after: int, info: StreamInfo | None, outlet: Outlet | None
    ) -> AsyncIterator[bytes]:
        metrics = self.metrics
        stream.attach()
        metrics.connections.inc()
        replaying = after > 0  # a resume: count what it replays, by source
        if replaying:
            (metrics.resume_memory if after + 1 >= stream.base else metrics.resume_store).inc()
        half_keepalive = self.settings.keepalive_s / 2 * 0.9
        loop = asyncio.get_running_loop()
        timings = stream.timings
        last_sent = time.perf_counter()
        try:
            yield self._retry_hint(info)
            while True:
                if self.draining:
                    async for chunk in self._reconnect(info):
                        yield chunk
                    return
                if after + 1 < stream.base:  # behind the memory window: catch up from the store
                    stored = await self.store.read(stream.id, after)
                    events = [Event.from_stored(e) for e in stored.events if e[0] < stream.base]
                    if not events or events[0].seq != after + 1:
                        # Events leave memory only once stored, so this cannot happen with a
                        # consistent store; never skip them: the client reconnects instead.
                        log.warning("stream %s: events after %d not in the store", stream.id, after)
                        async for chunk in self._reconnect(info):
                            yield chunk
                        return
                    metrics.replayed_store.inc(len(events))
                    yield b"".join(e.render(info) for e in events)
                    last_sent = time.perf_counter()
                    after = events[-1].seq
                    continue
                batch = stream.since(after)
                if batch and replaying:
                    metrics.replayed_memory.inc(len(batch))
                    replaying = False
                if batch:
                    if len(batch) == 1:  # the usual case: one new token
                        yield batch[0].render(info)
                    else:
                        yield b"".join(e.render(info) for e in batch)
                    last_sent = time.perf_counter()
                    if timings.first_byte is None and timings.first_token is not None:
                        timings.first_byte = last_sent
                        metrics.stage_first_byte.observe(last_sent - timings.accepted)
                    after = batch[-1].seq
                    if batch[-1].terminal:
                        return
                    continue
                if stream.finished and after >= stream.last_seq:
                    return
                if outlet is not None and timings.first_byte is not None and not self.draining:
                    # Caught up: the producer writes the next deltas to this client itself
                    # until something else happens (see LiveStream.wake).
                    direct = DirectReader(outlet, info, after, loop.create_future())
                    stream.direct.append(direct)
                    try:
                        await direct.parked
                    finally:
                        stream.release(direct)
                    await outlet.settle()
                    if direct.after != after:  # it was written to: when the last token came
                        after = direct.after
                        last_sent = max(last_sent, timings.last_token or 0.0)
                else:
                    await stream.wait()
                if after >= stream.last_seq and time.perf_counter() - last_sent >= half_keepalive:
                    yield PING
                    last_sent = time.perf_counter()
        finally:
            stream.detach()
            metrics.connections.dec()

    async def _remote_reader(
        self, meta: StreamMeta, after: int, info: StreamInfo | None
    ) -> AsyncIterator[bytes]:
        """Tail a stream whose producer runs (or ran) on another node, from the store."""
        metrics = self.metrics
        stream_id = meta.id
        # Counted from the generator's first step, so its ``finally`` always undoes it.
        self.remote_readers[stream_id] += 1
        metrics.connections.inc()
        if after:
            metrics.resume_store.inc()
        interval = self.config.tail_interval_ms / 1000
        half_keepalive = self.settings.keepalive_s / 2
        last_sent = time.monotonic()
        gap_waits = 0
        try:
            await self.store.touch_reader(stream_id, now_ms() + int(self.reader_heartbeat_s * 2500))
            yield self._retry_hint(info)
            while True:
                if self.draining:
                    async for chunk in self._reconnect(info):
                        yield chunk
                    return
                stored = await self.store.read(stream_id, after)
                events: list[Event] = []
                for raw in stored.events:
                    if raw[0] != after + len(events) + 1:
                        break  # a gap: the batch before it is not visible yet
                    events.append(Event.from_stored(raw))
                if events:
                    gap_waits = 0
                    metrics.replayed_store.inc(len(events))
                    yield b"".join(e.render(info) for e in events)
                    last_sent = time.monotonic()
                    after = events[-1].seq
                    if events[-1].terminal:
                        return
                    continue
                current = await self.store.get_meta(stream_id)
                if current is None:
                    return
                if current.status == "running" and current.lease_until_ms < now_ms():
                    await self.store.mark_lost(stream_id, now_ms())
                    continue
                if current.status != "running":
                    if stored.events:  # a gap in a finished stream: give it a moment
                        gap_waits += 1
                        if gap_waits > 20:
                            return
                        await asyncio.sleep(interval)
                        continue
                    last = await self._last_stored(stream_id)
                    if last is not None and last[1] in TERMINAL:
                        if last[0] < after and current.status == "failed":
                            # its stored ending is numbered within what this client saw
                            yield _lost_event(after + 1).render(info)
                        return  # otherwise everything, its ending included, was delivered
                    if current.status == "failed" and (last is None or last[0] <= after):
                        await self._store_lost_event(stream_id)  # the producer died
                        continue
                    return
                if time.monotonic() - last_sent >= half_keepalive:
                    yield PING
                    last_sent = time.monotonic()
                await asyncio.sleep(interval)
        finally:
            metrics.connections.dec()
            self._remote_done(stream_id)

    async def _last_stored(self, stream_id: str) -> StoredEvent | None:
        last = await self.store.last_seq(stream_id)
        if last == 0:
            return None
        events = (await self.store.read(stream_id, last - 1)).events
        return events[-1] if events else None

    async def _reconnect(self, info: StreamInfo | None) -> AsyncIterator[bytes]:
        """Tell the client to reconnect: a ``retry:`` hint, then the end of the response; chunk
        clients get a broken stream instead, since the openai SDK reads a clean end as a
        complete reply."""
        yield self._retry_hint(info)
        if info is not None:
            raise AbortStream

    def _retry_hint(self, info: StreamInfo | None) -> bytes:
        # The openai SDK's SSE parser turns a bare ``retry:`` frame into an empty event
        # and fails on it, so the chunk format gets none.
        return retry_frame(self.config.retry_ms) if info is None else b""

    def _remote_done(self, stream_id: str) -> None:
        self.remote_readers[stream_id] -= 1
        if self.remote_readers[stream_id] <= 0:
            del self.remote_readers[stream_id]

    async def _store_lost_event(self, stream_id: str) -> None:
        """Append the ``producer_lost`` ending (written only if absent: every reader on every
        node sees the same one)."""
        tail = await self._last_stored(stream_id)
        if tail is not None and tail[1] in TERMINAL:
            return
        last = tail[0] if tail else 0
        event = _lost_event(last + 1)
        await self.store.append(stream_id, [event.stored()])


def _lost_event(seq: int) -> Event:
    return Event.make(
        seq, "error", {"code": "producer_lost", "message": LOST_MESSAGE, "retryable": True}
    )
