"""The stream engine: creates streams, runs their producers, serves readers, drains.

One producer task per stream reads the upstream, numbers events 1, 2, 3, ... and appends
them to its :class:`LiveStream`; local readers are woken from memory at once. Background
loops batch events into the store (``FLUSH_INTERVAL_MS``), keep producer leases alive,
poll cross-node facts (cancel flags, remote readers) and cancel the upstream when nobody
has read the stream for ``RESUME_GRACE_S``. Readers on other nodes tail the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from core.errors import ApiError, InvalidRequest, NotFound, RateLimited, ServiceUnavailable
from core.providers import Finish, ModelProvider, TokenDelta
from core.schemas.chat import ChatCompletionRequest, new_completion_id
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.events import PING, TERMINAL, Event, StreamInfo, retry_frame
from stream_service.engine.live import LiveStream, Timings
from stream_service.engine.slots import SlotManager
from stream_service.metrics import StreamMetrics
from stream_service.sse import AbortStream
from stream_service.store import LeaseLost, StreamMeta, StreamStore
from stream_service.store.base import StoredEvent, now_ms

log = logging.getLogger("rtai.stream")
_json_line = msgspec.json.Encoder()

LOST_MESSAGE = (
    "The node producing this stream stopped. The events so far are stored; retry to continue."
)


class StreamEngine:
    def __init__(
        self,
        settings: Settings,
        config: StreamSettings,
        store: StreamStore,
        provider: ModelProvider,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.store = store
        self.provider = provider
        self.metrics = metrics or StreamMetrics()
        self.node = config.node_id
        self.live: dict[str, LiveStream] = {}
        self.remote_readers: defaultdict[str, int] = defaultdict(int)
        self.draining = False
        self.slots = SlotManager(store, settings, config)
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[None]] = set()
        # Streams with events to flush; a fixed set of workers writes them (no task per flush).
        self._flush_queue: asyncio.Queue[LiveStream] = asyncio.Queue()
        store.observe_writes(self.metrics.store_write)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self._poll_loop(), name="poll"),
            asyncio.create_task(self._reader_heartbeat_loop(), name="reader-heartbeat"),
            asyncio.create_task(self._keepalive_loop(), name="keepalive"),
            *(
                asyncio.create_task(self._flush_worker(), name=f"flush-{n}")
                for n in range(self.config.flush_concurrency)
            ),
        ]

    async def stop(self) -> None:
        """Shut down: anything still running ends as in a drain that ran out of time."""
        if not self.draining:
            await self.drain(timeout=min(5.0, self.config.drain_s))
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """SIGTERM: refuse new streams, ask clients to reconnect elsewhere, let producers finish."""
        self.draining = True
        for stream in list(self.live.values()):
            stream.wake()
        deadline = time.monotonic() + (timeout if timeout is not None else self.config.drain_s)
        running = [s.task for s in self.live.values() if s.task and not s.task.done()]
        if running:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic() - 1.0))
        for stream in self.live.values():
            if stream.task and not stream.task.done():
                self._cancel_local(stream, "drain_deadline")
        running = [s.task for s in self.live.values() if s.task and not s.task.done()]
        if running:
            await asyncio.wait(running, timeout=max(0.5, deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush_queue.join(), timeout=1.0)

    # --- creating and cancelling ---------------------------------------------------------
    async def create(
        self, owner: str, request: ChatCompletionRequest, accepted_at: float
    ) -> LiveStream:
        if self.draining:
            raise ServiceUnavailable(
                "This node is draining; retry the request.",
                code="draining",
                headers={"Retry-After": "1"},
            )
        await self.provider.require_model(request.model)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        info = StreamInfo(new_completion_id(), request.model, int(time.time()), include_usage)
        stream = LiveStream(
            id=uuid.uuid4().hex,
            owner=owner,
            info=info,
            window=self.config.memory_window,
            timings=Timings(accepted=accepted_at),
        )
        self.live[stream.id] = stream
        # The upstream call starts now, while the slot is claimed: no round trip before it.
        stream.task = asyncio.create_task(
            self._produce(stream, request), name=f"produce-{stream.id}"
        )
        claim = asyncio.ensure_future(self.slots.acquire(owner, stream.id, self.cancel_any))
        try:
            # Shielded: if this request is cancelled mid-claim, the claim still finishes and
            # a granted slot is given back instead of being held until its lease lapses.
            stream.slot_index = await asyncio.shield(claim)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                claim.add_done_callback(lambda done: self._give_back(owner, stream.id, done))
            if isinstance(exc, RateLimited):
                self.metrics.limit_rejections.inc()
            self._cancel_local(stream, "rejected")
            stream.admission.set_result(False)
            with contextlib.suppress(BaseException):
                await stream.task
            self.live.pop(stream.id, None)
            raise
        stream.admitted = True
        self.metrics.started.inc()
        self.metrics.active_streams.inc()
        stream.admission.set_result(True)
        self._flush_soon(stream)  # its record reaches the store now, without delaying anything
        return stream

    def _give_back(self, owner: str, stream_id: str, claim: asyncio.Future[int]) -> None:
        if not claim.cancelled() and claim.exception() is None:
            task = asyncio.ensure_future(self.slots.release(owner, claim.result(), stream_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _cancel_local(self, stream: LiveStream, reason: str) -> None:
        if stream.finished:
            return  # finishing up (final flush): nothing upstream to stop
        if stream.task and not stream.task.done() and stream.cancel_reason is None:
            stream.cancel_reason = reason
            stream.task.cancel()
            if reason not in ("rejected", "lease_lost"):
                self.metrics.upstream_cancels.labels(reason).inc()

    async def cancel_any(self, stream_id: str, reason: str) -> None:
        """Cancel a stream wherever its producer runs (used by the per-user limit)."""
        stream = self.live.get(stream_id)
        if stream is not None:
            self._cancel_local(stream, reason)
        else:
            await self.store.request_cancel(stream_id)

    async def cancel(self, owner: str, stream_id: str) -> dict[str, Any]:
        stream = self.live.get(stream_id)
        if stream is not None and stream.admitted:
            if stream.owner != owner:
                raise _not_found(stream_id)
            if stream.task and not stream.task.done():
                self._cancel_local(stream, "client")
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(stream.task), 5)
            return {"id": stream_id, "status": stream.status}
        meta = await self._owned_meta(owner, stream_id, wait_s=0.5)
        status = await self._settled_status(meta)
        if status == "running":
            await self.store.request_cancel(stream_id)
            return {"id": stream_id, "status": "cancelling"}
        return {"id": stream_id, "status": status}

    async def describe(self, owner: str, stream_id: str) -> dict[str, Any]:
        stream = self.live.get(stream_id)
        if stream is not None and stream.admitted:
            if stream.owner != owner:
                raise _not_found(stream_id)
            status = "failed" if stream.status == "lease_lost" else stream.status
            return {"id": stream_id, "status": status, "last_event_id": stream.last_seq}
        meta = await self._owned_meta(owner, stream_id, wait_s=0.5)
        return {
            "id": stream_id,
            "status": await self._settled_status(meta),
            "last_event_id": await self.store.last_seq(stream_id),
        }

    async def _settled_status(self, meta: StreamMeta) -> str:
        """A running stream whose producer's lease lapsed is failed (one node decides)."""
        if meta.status == "running" and meta.lease_until_ms < now_ms():
            await self.store.mark_lost(meta.id, now_ms())
            return "failed"
        return meta.status

    async def _owned_meta(self, owner: str, stream_id: str, wait_s: float = 0.0) -> StreamMeta:
        """The stream's record; ``wait_s`` covers a reader that reaches another node in the
        first milliseconds of a stream, before its record is written."""
        deadline = time.monotonic() + wait_s
        while True:
            meta = await self.store.get_meta(stream_id)
            if meta is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if meta is None or meta.owner != owner:
            raise _not_found(stream_id)
        return meta

    # --- the producer --------------------------------------------------------------------
    async def _produce(self, stream: LiveStream, request: ChatCompletionRequest) -> None:
        timings = stream.timings
        metrics = self.metrics
        status = "completed"
        upstream = self.provider.stream(request)
        try:
            stream.append("status", {"state": "thinking"})
            timings.upstream_sent = time.perf_counter()
            finish: Finish | None = None
            flush_at = self.config.flush_max_events
            async for item in upstream:
                if isinstance(item, TokenDelta):
                    now = time.perf_counter()
                    if timings.first_token is None:
                        timings.first_token = now
                    else:
                        metrics.inter_token.observe(now - (timings.last_token or now))
                    timings.last_token = now
                    timings.tokens += 1
                    stream.append("delta", {"text": item.text})
                    if stream.last_seq - stream.flushed_seq >= flush_at:
                        self._flush_soon(stream)
                else:
                    finish = item
            reason = finish.reason if finish else "stop"
            stream.append("done", self._done_payload(stream, reason, finish))
        except asyncio.CancelledError:
            if stream.cancel_reason is None:  # not ours: the process is going down
                stream.cancel_reason = "drain_deadline"
            reason = stream.cancel_reason
            if reason in ("rejected", "lease_lost"):
                status = reason
            elif reason == "upstream_timeout":
                status = "failed"
                message = f"The model sent nothing for {self.config.upstream_idle_s:.0f} s."
                stream.append(
                    "error", {"code": "upstream_timeout", "message": message, "retryable": True}
                )
            elif reason == "drain_deadline":
                status = "failed"
                stream.append(
                    "error", {"code": "producer_lost", "message": LOST_MESSAGE, "retryable": True}
                )
            else:
                status = "cancelled"
                stream.append("done", self._done_payload(stream, "cancelled", None))
        except ApiError as exc:
            status = "failed"
            retryable = bool(
                getattr(exc, "retryable", exc.status_code >= 500 or exc.status_code == 429)
            )
            stream.append(
                "error",
                {
                    "code": exc.code or "upstream_error",
                    "message": exc.message,
                    "retryable": retryable,
                },
            )
        except Exception:
            log.exception("producer %s failed", stream.id)
            status = "failed"
            stream.append(
                "error",
                {
                    "code": "internal_error",
                    "message": "The stream failed unexpectedly.",
                    "retryable": True,
                },
            )
        finally:
            with contextlib.suppress(Exception):
                await upstream.aclose()  # type: ignore[attr-defined]
            stream.status = status
            stream.finished = True
            stream.wake()
            if await asyncio.shield(stream.admission):
                await asyncio.shield(self._finalize(stream))

    def _done_payload(
        self, stream: LiveStream, reason: str, finish: Finish | None
    ) -> dict[str, Any]:
        t = stream.timings
        end = time.perf_counter()
        ttft_ms = round((t.first_token - t.accepted) * 1000, 1) if t.first_token else None
        usage = (
            {
                "prompt_tokens": finish.usage.prompt_tokens,
                "completion_tokens": finish.usage.completion_tokens,
                "total_tokens": finish.usage.total_tokens,
            }
            if finish
            else None
        )
        return {
            "finish_reason": reason,
            "usage": usage,
            "metrics": {
                "ttft_ms": ttft_ms,
                "duration_ms": round((end - t.accepted) * 1000, 1),
                "tokens": t.tokens,
            },
        }

    async def _finalize(self, stream: LiveStream) -> None:
        t = stream.timings
        try:
            if stream.status != "lease_lost":
                with contextlib.suppress(LeaseLost):
                    await self._flush(stream, final=True)
                    await self._retry(
                        lambda: self.store.finish(
                            stream.id, self.node, stream.status, stream.last_seq
                        )
                    )
        except Exception:
            log.exception("final flush of %s failed; its lease will lapse", stream.id)
        finally:
            await self.slots.release(stream.owner, stream.slot_index, stream.id)
            self.metrics.active_streams.dec()
            self.metrics.finished.labels(stream.status).inc()
            self.metrics.tokens.inc(t.tokens)
            if t.first_token is not None:
                self.metrics.ttft.observe(t.first_token - t.accepted)
                self.metrics.stage_first_token.observe(t.first_token - t.accepted)
            if t.upstream_sent is not None:
                self.metrics.stage_upstream_sent.observe(t.upstream_sent - t.accepted)
            # One JSON line per stream: CloudWatch turns it into the TTFT metric.
            record = {
                "event": "stream_done",
                "stream_id": stream.id,
                "node": self.node,
                "status": stream.status,
                "ttft_ms": round((t.first_token - t.accepted) * 1000, 1) if t.first_token else None,
                "tokens": t.tokens,
                "duration_ms": round((time.perf_counter() - t.accepted) * 1000, 1),
            }
            log.info("%s", _json_line.encode(record).decode())
        loop = asyncio.get_running_loop()
        loop.call_later(self.config.retain_s, self._forget, stream)

    def _forget(self, stream: LiveStream) -> None:
        if self.live.get(stream.id) is stream and stream.readers == 0:
            del self.live[stream.id]
        elif self.live.get(stream.id) is stream:
            asyncio.get_running_loop().call_later(self.config.retain_s, self._forget, stream)

    # --- store batching ------------------------------------------------------------------
    def _meta(self, stream: LiveStream) -> StreamMeta:
        return StreamMeta(
            id=stream.id,
            owner=stream.owner,
            node=self.node,
            model=stream.info.model,
            lease_until_ms=now_ms() + int(self.config.lease_ttl_s * 1000),
            completion_id=stream.info.completion_id,
            include_usage=stream.info.include_usage,
            created_ms=int(stream.info.created_s * 1000),
        )

    async def _flush(self, stream: LiveStream, final: bool = False) -> None:
        async with stream.lock:
            if not stream.meta_written:
                await self._retry(lambda: self.store.create(self._meta(stream)), final)
                stream.meta_written = True
                stream.last_heartbeat = time.monotonic()
            while pending := stream.unflushed():
                batch = [e.stored() for e in pending[: self.store.max_batch]]
                written = await self._retry(lambda b=batch: self.store.append(stream.id, b), final)
                if not written:  # that key was already written: by an earlier try, or not us?
                    await self._after_conflict(stream, batch)
                    continue
                stream.flushed_seq = batch[-1][0]
                stream.last_flush = time.monotonic()
            stream.trim()

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

    async def _retry(self, op: Any, persistent: bool = True) -> Any:
        """boto3 already retries; this outer loop keeps a final flush going through an outage."""
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
        return None

    def _flush_soon(self, stream: LiveStream) -> None:
        if stream.admitted and not stream.flush_queued:
            stream.flush_queued = True
            self._flush_queue.put_nowait(stream)

    async def _flush_worker(self) -> None:
        while True:
            stream = await self._flush_queue.get()
            stream.flush_queued = False
            try:
                await self._flush(stream)
            except LeaseLost:
                log.warning("stream %s was declared lost by another node", stream.id)
                self._cancel_local(stream, "lease_lost")
            except Exception:
                log.warning("flush of %s failed; will retry", stream.id, exc_info=True)
            finally:
                self._flush_queue.task_done()

    async def _keepalive_loop(self) -> None:
        """Wake idle readers twice per keepalive interval: they ping if they have been silent
        for half of it, so no connection is ever silent for a whole ``KEEPALIVE_S``."""
        interval = self.settings.keepalive_s / 2
        while True:
            await asyncio.sleep(interval)
            for stream in list(self.live.values()):
                stream.wake()

    async def _flush_loop(self) -> None:
        interval = self.config.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            for stream in list(self.live.values()):
                if (
                    stream.admitted
                    and not stream.finished
                    and (stream.last_seq > stream.flushed_seq or not stream.meta_written)
                ):
                    self._flush_soon(stream)

    # --- cross-node facts -----------------------------------------------------------------
    async def _poll_loop(self) -> None:
        interval = self.config.poll_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._poll_once()
            except Exception:
                log.warning("poll failed", exc_info=True)

    async def _poll_once(self) -> None:
        running = [
            s for s in self.live.values() if s.admitted and not s.finished and s.meta_written
        ]
        if not running:
            return
        facts = await self.store.poll([s.id for s in running])
        now_mono = time.monotonic()
        perf_now = time.perf_counter()
        wall = now_ms()
        heartbeat_s = self.config.heartbeat_s
        lease_ms = int(self.config.lease_ttl_s * 1000)
        beats = []
        for stream in running:
            fact = facts.get(stream.id)
            if fact is not None:
                stream.remote_reader_until_ms = fact.reader_until_ms
                if fact.reader_until_ms >= wall:  # read on another node: the grace restarts
                    stream.detached_since = now_mono
                if fact.cancel:
                    self._cancel_local(stream, "client")
                    continue
            heard = stream.timings.last_token or stream.timings.upstream_sent
            if heard is not None and perf_now - heard > self.config.upstream_idle_s:
                self._cancel_local(stream, "upstream_timeout")
                continue
            unread = stream.readers == 0 and stream.remote_reader_until_ms < wall
            if unread and now_mono - stream.detached_since >= self.settings.resume_grace_s:
                self._cancel_local(stream, "no_reader")
                continue
            if now_mono - stream.last_heartbeat >= heartbeat_s:
                stream.last_heartbeat = now_mono
                beats.append(self._heartbeat(stream, wall + lease_ms))
            self.slots.maybe_renew(stream.owner, stream.slot_index, stream.id, beats)
        if beats:
            await asyncio.gather(*beats, return_exceptions=True)

    async def _heartbeat(self, stream: LiveStream, lease_until: int) -> None:
        try:
            await self.store.heartbeat(stream.id, self.node, lease_until, stream.flushed_seq)
        except LeaseLost:
            log.warning("lost the lease of %s; stopping its producer", stream.id)
            self._cancel_local(stream, "lease_lost")

    async def _reader_heartbeat_loop(self) -> None:
        interval = self.reader_heartbeat_s
        while True:
            await asyncio.sleep(interval)
            ids = [sid for sid, count in self.remote_readers.items() if count > 0]
            until = now_ms() + int(interval * 2500)
            await asyncio.gather(
                *(self.store.touch_reader(sid, until) for sid in ids), return_exceptions=True
            )

    @property
    def reader_heartbeat_s(self) -> float:
        return max(0.2, min(5.0, self.settings.resume_grace_s / 4))

    # --- readers -------------------------------------------------------------------------
    async def open(
        self, owner: str, stream_id: str, after: int, openai_format: bool, wait_s: float = 0.0
    ) -> AsyncIterator[bytes]:
        """Check access and position, then return the event byte stream (404/400 raise first)."""
        if self.draining:
            raise ServiceUnavailable(
                "This node is draining; reconnect.", code="draining", headers={"Retry-After": "1"}
            )
        stream = self.live.get(stream_id)
        # A producer that lost its lease wrote no ending: the store has the stream's story.
        if stream is not None and stream.admitted and stream.status != "lease_lost":
            if stream.owner != owner:
                raise _not_found(stream_id)
            if after > stream.last_seq:
                raise _beyond(after, stream.last_seq)
            return self._local_reader(stream, after, stream.info if openai_format else None)
        meta = await self._owned_meta(owner, stream_id, wait_s)
        if meta.status != "running":
            last = await self.store.last_seq(stream_id)
            if after > last:
                raise _beyond(after, last)
        info = (
            StreamInfo(meta.completion_id, meta.model, meta.created_ms // 1000, meta.include_usage)
            if openai_format
            else None
        )
        return self._remote_reader(meta, after, info)

    async def _local_reader(
        self, stream: LiveStream, after: int, info: StreamInfo | None
    ) -> AsyncIterator[bytes]:
        metrics = self.metrics
        stream.attach()
        metrics.connections.inc()
        if after:
            (metrics.resume_memory if after + 1 >= stream.base else metrics.resume_store).inc()
        half_keepalive = self.settings.keepalive_s / 2 * 0.9
        try:
            yield self._retry_hint(info)
            while True:
                if self.draining:
                    yield self._retry_hint(info)
                    if info is not None:
                        raise AbortStream  # chunk clients must see a broken stream, not an end
                    return
                if after + 1 < stream.base:  # behind the memory window: catch up from the store
                    stored = await self.store.read(stream.id, after)
                    events = [Event.from_stored(e) for e in stored.events if e[0] < stream.base]
                    if events:
                        metrics.replayed_store.inc(len(events))
                        yield b"".join(e.render(info) for e in events)
                        after = events[-1].seq
                        continue
                batch = stream.since(after)
                if batch:
                    yield b"".join(e.render(info) for e in batch)
                    if stream.timings.first_byte is None and stream.timings.first_token is not None:
                        stream.timings.first_byte = time.perf_counter()
                        metrics.stage_first_byte.observe(
                            stream.timings.first_byte - stream.timings.accepted
                        )
                    after = batch[-1].seq
                    if batch[-1].terminal:
                        return
                    continue
                if stream.finished and after >= stream.last_seq:
                    return
                before = time.monotonic()
                await stream.wait()
                if after >= stream.last_seq and time.monotonic() - before >= half_keepalive:
                    yield PING
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
                    yield self._retry_hint(info)
                    if info is not None:
                        raise AbortStream
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
                        return  # everything, its ending included, was delivered before
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
        event = Event.make(
            last + 1, "error", {"code": "producer_lost", "message": LOST_MESSAGE, "retryable": True}
        )
        await self.store.append(stream_id, [event.stored()])


def _not_found(stream_id: str) -> NotFound:
    return NotFound(f"No stream '{stream_id}'.", code="stream_not_found")


def _beyond(after: int, last: int) -> InvalidRequest:
    return InvalidRequest(
        f"Last-Event-ID {after} is beyond this stream's last event ({last}).",
        code="invalid_last_event_id",
    )


__all__ = ["RateLimited", "StreamEngine"]
