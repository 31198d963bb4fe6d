"""The store writer: batches each live stream's events into the store.

At most one batch write per stream in flight, at most every ``FLUSH_INTERVAL_MS`` (or at
once when ``FLUSH_MAX_EVENTS`` are waiting), by a fixed set of workers (no task per flush).
The stream's record is written by its first flush, so nothing waits for the store before
the first token. A batch key that already exists means an earlier try wrote it, or another
node declared the stream lost: then the producer is told (``on_lease_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from stream_service.engine.events import Event
from stream_service.engine.live import LiveStream
from stream_service.store import LeaseLost, StreamMeta, StreamStore
from stream_service.store.base import StoredEvent, now_ms

log = logging.getLogger("rtai.stream.writer")
T = TypeVar("T")


@dataclass(slots=True)
class _Flushing:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    meta_written: bool = False
    queued: bool = False


class StoreWriter:
    def __init__(
        self,
        store: StreamStore,
        *,
        node: str,
        lease_ttl_s: float,
        interval_ms: int,
        workers: int,
        streams: Callable[[], Iterable[LiveStream]],
        on_lease_lost: Callable[[LiveStream], None],
    ) -> None:
        self.store = store
        self.node = node
        self.lease_ms = int(lease_ttl_s * 1000)
        self.interval_s = interval_ms / 1000
        self.workers = workers
        self._streams = streams
        self._on_lease_lost = on_lease_lost
        self._state: dict[str, _Flushing] = {}
        self._queue: asyncio.Queue[LiveStream] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._tick(), name="flush-tick"),
            *(asyncio.create_task(self._work(), name=f"flush-{n}") for n in range(self.workers)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def track(self, stream: LiveStream) -> None:
        """An admitted stream: its record reaches the store now, without delaying anything."""
        self._state[stream.id] = _Flushing()
        self.soon(stream)

    def stored(self, stream: LiveStream) -> bool:
        """Whether its record is in the store (cross-node facts can be polled)."""
        state = self._state.get(stream.id)
        return state is not None and state.meta_written

    def soon(self, stream: LiveStream) -> None:
        state = self._state.get(stream.id)
        if state is not None and not state.queued:
            state.queued = True
            self._queue.put_nowait(stream)

    async def idle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait (at most ``timeout``) until every queued flush is written."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=timeout)

    async def finish(self, stream: LiveStream) -> None:
        """The final flush and status of a stream whose producer ended (retried through an
        outage; a lost lease means another node already tells its story)."""
        try:
            if not stream.lease_lost:
                await self.flush(stream, final=True)
                await retry(
                    lambda: self.store.finish(
                        stream.id, self.node, stream.status.value, stream.last_seq
                    )
                )
        except LeaseLost:
            # Declared lost while it ended (a node frozen past its lease): from now on this
            # node answers for it from the store, like every other node, not from memory.
            log.warning("stream %s ended after another node declared it lost", stream.id)
            stream.lease_lost = True
        except Exception:
            log.exception("final flush of %s failed; its lease will lapse", stream.id)
        finally:
            self._state.pop(stream.id, None)

    async def flush(self, stream: LiveStream, final: bool = False) -> None:
        """Write the record if needed, then the events appended so far (not those that
        arrive meanwhile: a flush is bounded, the next one takes them)."""
        state = self._state.get(stream.id)
        if state is None:
            return
        async with state.lock:
            if not state.meta_written:
                await retry(lambda: self.store.create(self._meta(stream)), persistent=final)
                state.meta_written = True
            upto = stream.last_seq
            while stream.flushed_seq < upto and (pending := stream.unflushed()):
                batch = _batch(pending, self.store.max_batch, upto)
                written = await retry(
                    lambda b=batch: self.store.append(stream.id, b),  # type: ignore[misc]
                    persistent=final,
                )
                if not written:  # that key was already written: by an earlier try, or not us?
                    await self._after_conflict(stream, batch)
                    continue
                stream.flushed_seq = batch[-1][0]
            stream.trim()

    def _meta(self, stream: LiveStream) -> StreamMeta:
        info = stream.info
        return StreamMeta(
            id=stream.id,
            owner=stream.owner,
            node=self.node,
            model=info.model,
            lease_until_ms=now_ms() + self.lease_ms,
            completion_id=info.completion_id,
            include_usage=info.include_usage,
            created_ms=int(info.created_s * 1000),
        )

    async def _after_conflict(self, stream: LiveStream, batch: list[StoredEvent]) -> None:
        """A batch key existed. If another node has declared this stream lost, stop; else an
        earlier attempt wrote part of it: carry on after what is stored."""
        meta = await self.store.get_meta(stream.id)
        if meta is None or meta.status != "running" or meta.node != self.node:
            raise LeaseLost(stream.id)
        stored = await self.store.last_seq(stream.id)
        if stored < batch[0][0]:
            raise LeaseLost(stream.id)  # cannot happen with ordered flushes; be safe
        stream.flushed_seq = max(stream.flushed_seq, min(stored, batch[-1][0]))

    async def _work(self) -> None:
        while True:
            stream = await self._queue.get()
            state = self._state.get(stream.id)
            if state is not None:
                state.queued = False
            try:
                await self.flush(stream)
            except LeaseLost:
                log.warning("stream %s was declared lost by another node", stream.id)
                self._on_lease_lost(stream)
            except Exception:
                log.warning("flush of %s failed; will retry", stream.id, exc_info=True)
            finally:
                self._queue.task_done()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for stream in self._streams():
                if stream.finished:
                    continue
                state = self._state.get(stream.id)
                if state is not None and (
                    stream.last_seq > stream.flushed_seq or not state.meta_written
                ):
                    self.soon(stream)


# One stored batch's event payloads at most: a DynamoDB item holds 400 KB (events are at
# most MAX_DELTA_BYTES each, so a batch of large deltas is cut short instead).
BATCH_MAX_BYTES = 300_000
_EVENT_OVERHEAD = 24  # seq, kind and msgpack framing, generously


def _batch(pending: list[Event], max_events: int, upto: int) -> list[StoredEvent]:
    """The next batch: at most ``max_events`` events up to seq ``upto``, and at most
    BATCH_MAX_BYTES of them (always at least one)."""
    batch: list[StoredEvent] = []
    size = 0
    for event in pending[:max_events]:
        if event.seq > upto:
            break
        size += len(event.data) + _EVENT_OVERHEAD
        if batch and size > BATCH_MAX_BYTES:
            break
        batch.append(event.stored())
    return batch


async def retry(op: Callable[[], Awaitable[T]], persistent: bool = True) -> T:
    """boto3 already retries each call; this outer loop keeps a final flush going through
    an outage (``persistent``), or tries once (the next tick tries again)."""
    attempts = 20 if persistent else 1
    for attempt in range(attempts):
        try:
            return await op()
        except LeaseLost:
            raise
        except Exception:
            if attempt == attempts - 1:
                raise
            log.warning("store write failed; retrying", exc_info=True)
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")
