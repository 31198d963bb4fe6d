"""The stream engine: creates streams, runs their producers, opens readers, drains.

It owns its parts, each built with explicit dependencies and testable alone:
:class:`~.slots.Slots` (per-user admission, one store write before the upstream call),
:class:`~.producer.Producer` (upstream -> events), :class:`~.store_writer.StoreWriter`
(batches into the store), :class:`~.watchdog.Watchdog` (cancel flags, timeouts, the grace
window, leases, keepalive ticks), :class:`~.presence.ReaderPresence` (readers and their
limits) and :class:`~.reader.Readers` (memory or store, paged). It knows no transport:
readers yield events, and the caller renders them in its :class:`~.events.Format`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from core.errors import RateLimited
from core.providers import ModelProvider
from core.providers.base import Completion
from core.schemas.chat import ChatCompletionRequest, new_completion_id
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine import errors
from stream_service.engine.events import Event, Format, Sink, StreamInfo
from stream_service.engine.grace import requested_grace
from stream_service.engine.ids import StreamIds, is_ticket, new_ticket
from stream_service.engine.live import LiveStream, Timings
from stream_service.engine.presence import ReaderPresence, Seat
from stream_service.engine.producer import Producer
from stream_service.engine.reader import Item, Readers, ReadLimits
from stream_service.engine.slots import Slots
from stream_service.engine.store_writer import StoreWriter
from stream_service.engine.types import StopReason, StreamStatus
from stream_service.engine.watchdog import Limits, Watchdog
from stream_service.metrics import StreamMetrics
from stream_service.store import Holder, StreamMeta, StreamStore
from stream_service.store.base import now_ms

log = logging.getLogger("rtai.stream")
_json_line = msgspec.json.Encoder()

MakeFormat = Callable[[StreamInfo], Format]
# A stream that never had a reader counts as unread (it yields its slot to its user's next
# stream) only after this long: its client may still be connecting.
UNREAD_AFTER_S = 2.0
# May ``user`` read a stream whose owner is ``owner`` (other than themself)? Rooms let
# every member read the room's replies (owner ``room:<id>``).
SharedAccess = Callable[[str, str], Awaitable[bool]]


async def _owner_only(user: str, owner: str) -> bool:
    del user, owner
    return False


@dataclass(slots=True)
class Opened:
    """A reader, opened: its events (rendered with ``format``) and what the stream is.
    Whoever opens one closes it (``close``), whether or not it read anything."""

    stream_id: str
    info: StreamInfo
    format: Format
    items: AsyncIterator[Item]
    seat: Seat
    presence: ReaderPresence

    async def close(self) -> None:
        try:
            await self.items.aclose()  # type: ignore[attr-defined]
        finally:
            self.presence.leave(self.seat)


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
        self.ids = StreamIds(settings.url_token_key, config.record_wait_s)
        self.live: dict[str, LiveStream] = {}
        self.draining = False
        self.limits = Limits(
            keepalive_s=settings.keepalive_s,
            resume_grace_s=settings.resume_grace_s,
            poll_interval_s=config.poll_interval_ms / 1000,
            lease_ttl_s=config.lease_ttl_s,
            first_token_s=config.upstream_first_token_s,
            idle_s=config.upstream_idle_s,
            unread_after_s=min(UNREAD_AFTER_S, settings.resume_grace_s),
        )
        self.slots = Slots(
            store,
            node=self.node,
            limit=settings.max_streams_per_user,
            policy=settings.stream_limit_policy,
            node_ttl_s=config.slot_ttl_s,
            stop_anywhere=self.stop_anywhere,
            find_unread=self.unread_streams,
        )
        self.writer = StoreWriter(
            store,
            node=self.node,
            lease_ttl_s=config.lease_ttl_s,
            interval_ms=config.flush_interval_ms,
            workers=config.flush_concurrency,
            streams=self.live.values,
            on_lease_lost=lambda s: self._stop(s, StopReason.LEASE_LOST),
        )
        self.watchdog = Watchdog(
            store,
            self.limits,
            node=self.node,
            streams=self.live.values,
            stored=self.writer.stored,
            stop=self._stop,
        )
        self.presence = ReaderPresence(
            store,
            per_stream=config.max_readers_per_stream,
            per_user=config.max_readers_per_user,
            heartbeat_s=max(0.2, min(5.0, settings.resume_grace_s / 4)),
        )
        self.metrics.open_readers.set_function(lambda: self.presence.open_readers)
        self.readers = Readers(
            store,
            self.presence,
            self.metrics,
            ReadLimits(
                keepalive_s=settings.keepalive_s,
                tail_interval_s=config.tail_interval_ms / 1000,
                page_events=config.resume_page_events,
            ),
            draining=lambda: self.draining,
        )
        self.producer = Producer(
            provider,
            self.metrics,
            self.limits,
            flush_at=config.flush_max_events,
            flush_soon=self.writer.soon,
            on_end=self._finalize,
            before_end=self._release_slot,
        )
        self._background: set[asyncio.Future[None]] = set()
        self.shared_access: SharedAccess = _owner_only
        self._drain_hooks: list[Callable[[], Awaitable[None]]] = []
        store.observe_writes(self.metrics.store_write)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await self.slots.start()
        await self.writer.start()
        await self.watchdog.start()
        await self.presence.start()

    async def stop(self) -> None:
        """Shut down: anything still running ends as in a drain that ran out of time."""
        if not self.draining:
            await self.drain(timeout=min(5.0, self.config.drain_s))
        await self.watchdog.stop()
        await self.presence.stop()
        await self.writer.stop()
        await self.slots.stop()
        await self.provider.aclose()  # its connection pool

    def on_drain(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` when the node starts draining (transports close their sockets)."""
        self._drain_hooks.append(hook)

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """SIGTERM: refuse new streams, ask clients to reconnect elsewhere, let producers finish."""
        self.draining = True
        for hook in self._drain_hooks:
            try:
                await hook()
            except Exception:
                log.warning("a drain hook failed", exc_info=True)
        for stream in list(self.live.values()):
            stream.wake()
        deadline = time.monotonic() + (timeout if timeout is not None else self.config.drain_s)
        running = self._running_tasks()
        if running:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic() - 1.0))
        for stream in list(self.live.values()):
            self._stop(stream, StopReason.DRAIN_DEADLINE)
        running = self._running_tasks()
        if running:
            await asyncio.wait(running, timeout=max(0.5, deadline - time.monotonic()))
        await self.writer.idle(timeout=1.0)

    def _running_tasks(self) -> list[asyncio.Task[None]]:
        return [s.task for s in self.live.values() if s.task and not s.task.done()]

    # --- creating -----------------------------------------------------------------------
    async def create(
        self,
        owner: str,
        request: ChatCompletionRequest,
        accepted_at: float,
        *,
        slot_user: str | None = None,
        observer: Callable[[Event], None] | None = None,
        grace_header: str | None = None,
    ) -> LiveStream:
        """Admit (one store write), then start the upstream call. A refused create (429)
        sends nothing upstream. ``slot_user``: whose per-user limit it counts against, when
        not its owner's (a room's reply counts against the member who asked for it).
        ``grace_header``: the request's ``X-Resume-Grace-S``, if any."""
        if self.draining:
            raise errors.draining()
        grace_s = requested_grace(request, grace_header, self.limits.resume_grace_s)
        await self.provider.check(request)
        stream_id = self.ids.new(owner)
        slot_user = slot_user or owner
        await self._admit(slot_user, stream_id)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        info = StreamInfo(new_completion_id(), request.model, int(time.time()), include_usage)
        stream = LiveStream(
            id=stream_id,
            owner=owner,
            slot_user=slot_user,
            info=info,
            window=self.config.memory_window,
            timings=Timings(accepted=accepted_at),
            observer=observer,
            grace_s=grace_s,
        )
        if observer is not None:  # it reads every event: the stream is never unread
            stream.presence.attach()
        self.live[stream.id] = stream
        self.producer.start(stream, request)
        self.writer.track(stream)
        self.metrics.started.inc()
        self.metrics.active_streams.inc()
        return stream

    async def unread_streams(self, holders: list[Holder]) -> set[str]:
        """Which of these streams (a user's, at the limit) nobody reads on any node: this
        node's from memory, the others' from their records (one batched read)."""
        mono, wall = time.monotonic(), now_ms()
        unread: set[str] = set()
        elsewhere: list[str] = []
        for holder in holders:
            if is_ticket(holder.stream_id):
                continue  # a non-streaming call: its client waits for the answer
            if holder.node == self.node:
                stream = self.live.get(holder.stream_id)
                if stream is not None and self.watchdog.unread(stream, mono, wall):
                    unread.add(stream.id)
            else:
                elsewhere.append(holder.stream_id)
        if elsewhere:
            facts = await self.store.poll(elsewhere)
            unread.update(
                stream_id
                for stream_id, fact in facts.items()
                if fact.unread_since_ms and fact.reader_until_ms < wall
            )
        return unread

    async def _admit(self, owner: str, stream_id: str) -> None:
        claim = asyncio.ensure_future(self.slots.acquire(owner, stream_id))
        try:
            # Shielded: if the request is cancelled mid-claim, the claim still finishes and
            # a granted slot is given back instead of being held until its node goes.
            await asyncio.shield(claim)
        except asyncio.CancelledError:
            claim.add_done_callback(lambda done: self._give_back(owner, stream_id, done))
            raise
        except RateLimited:
            self.metrics.limit_rejections.inc()
            raise

    def _give_back(self, owner: str, stream_id: str, claim: asyncio.Future[None]) -> None:
        if not claim.cancelled() and claim.exception() is None:
            self._spawn(self.slots.release(owner, stream_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def complete(self, owner: str, request: ChatCompletionRequest) -> Completion:
        """A non-streaming completion: counted against the per-user limit, refused while
        draining, bounded by ``UPSTREAM_COMPLETE_S``."""
        if self.draining:
            raise errors.draining()
        await self.provider.check(request)
        ticket = new_ticket()
        await self._admit(owner, ticket)
        try:
            async with asyncio.timeout(self.config.upstream_complete_s):
                return await self.provider.complete(request)
        except TimeoutError:
            raise errors.completion_timeout(self.config.upstream_complete_s) from None
        finally:
            self._spawn(self.slots.release(owner, ticket))

    # --- stopping -----------------------------------------------------------------------
    def _stop(self, stream: LiveStream, reason: StopReason) -> None:
        if self.producer.stop(stream, reason) and reason.counted_as_cancel:
            self.metrics.upstream_cancels.labels(reason.value).inc()

    async def stop_anywhere(self, stream_id: str, reason: StopReason) -> None:
        """Stop a stream wherever its producer runs (the per-user limit's ``replace``)."""
        stream = self.live.get(stream_id)
        if stream is not None:
            self._stop(stream, reason)
        elif not is_ticket(stream_id):  # a non-streaming call has nothing to cancel
            await self.store.request_cancel(stream_id)

    async def cancel(
        self, owner: str, stream_id: str, as_owners: Sequence[str] = ()
    ) -> dict[str, Any]:
        """``as_owners``: whose streams ``owner`` may also be reading (``room:<id>`` of the
        rooms a socket joined): an id made for one of them may wait for its record."""
        stream = await self._local(owner, stream_id)
        if stream is not None:
            if stream.task and not stream.task.done():
                self._stop(stream, StopReason.CLIENT)
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(stream.task), 5)
            if not stream.lease_lost:  # else: declared lost meanwhile, the store tells it
                return {"id": stream_id, "status": stream.status.value}
        meta = await self._owned_meta(owner, stream_id, as_owners)
        status = await self._settled_status(meta)
        if status is StreamStatus.RUNNING:
            await self.store.request_cancel(stream_id)
            return {"id": stream_id, "status": "cancelling"}
        return {"id": stream_id, "status": status.value}

    async def describe(self, owner: str, stream_id: str) -> dict[str, Any]:
        stream = await self._local(owner, stream_id)
        if stream is not None:
            return {
                "id": stream_id,
                "status": stream.status.value,
                "last_event_id": stream.last_seq,
            }
        meta = await self._owned_meta(owner, stream_id)
        return {
            "id": stream_id,
            "status": (await self._settled_status(meta)).value,
            "last_event_id": await self.store.last_seq(stream_id),
        }

    async def _local(self, user: str, stream_id: str) -> LiveStream | None:
        """The stream if its producer runs here, ``user`` may read it, and it still tells its
        story (a producer that lost its lease does not: the store does). Someone else's
        stream is None: it is answered by the store's path, as an unknown id is."""
        stream = self.live.get(stream_id)
        if stream is None or stream.lease_lost:
            return None
        if stream.owner != user and not await self.shared_access(user, stream.owner):
            return None
        return stream

    async def _owned_meta(
        self, owner: str, stream_id: str, as_owners: Sequence[str] = ()
    ) -> StreamMeta:
        """The stream's record. A reader that reaches another node in the first moments of
        its own stream (made for ``owner`` or one of ``as_owners`` in the last minute)
        waits for it (``RECORD_WAIT_S``); any other id gets no wait: unknown and foreign
        ids answer through this same path, after the same single read."""
        deadline = self.ids.record_deadline(stream_id, (owner, *as_owners))
        while True:
            meta = await self.store.get_meta(stream_id)
            if meta is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if meta is None or (
            meta.owner != owner and not await self.shared_access(owner, meta.owner)
        ):
            # Another user's stream answers as late as an unknown one: no timing tells
            # whether an id exists.
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            raise errors.not_found(stream_id)
        return meta

    async def running_position(self, stream_id: str) -> int | None:
        """The last seq of a stream that still runs (here or anywhere), else None."""
        stream = self.live.get(stream_id)
        if stream is not None and not stream.lease_lost:
            return None if stream.finished else stream.last_seq
        meta = await self.store.get_meta(stream_id)
        if meta is None or await self._settled_status(meta) is not StreamStatus.RUNNING:
            return None
        return await self.store.last_seq(stream_id)

    async def _settled_status(self, meta: StreamMeta) -> StreamStatus:
        """A running stream whose producer's lease lapsed is failed (one node decides)."""
        if meta.status == StreamStatus.RUNNING and meta.lease_until_ms < now_ms():
            await self.store.mark_lost(meta.id, now_ms())
            return StreamStatus.FAILED
        return StreamStatus(meta.status)

    # --- reading ------------------------------------------------------------------------
    async def open(
        self,
        owner: str,
        stream_id: str,
        after: int,
        make_format: MakeFormat,
        sink: Sink | None = None,
        as_owners: Sequence[str] = (),
    ) -> Opened:
        """Check access and position (404 / 400 / 429 raise here, before anything is sent),
        then return the reader. With a ``sink``, a reader on the producer's node gets new
        deltas written by the producer directly once it is caught up. A stream of its own
        (or of ``as_owners``) created moments ago on another node is waited for
        (``RECORD_WAIT_S``), on every transport alike."""
        if self.draining:
            raise errors.draining("reconnect")
        stream = await self._local(owner, stream_id)
        if stream is not None:
            if after > stream.last_seq:
                raise errors.beyond(after, stream.last_seq)
            fmt = make_format(stream.info)
            seat = self.presence.enter(owner, stream_id, stream)
            if stream.presence.unread_stored:  # read again: it no longer yields its slot
                self._spawn(self.watchdog.mark(stream, 0))
            items = self.readers.local(stream, after, fmt, sink)
            return Opened(stream_id, stream.info, fmt, items, seat, self.presence)
        meta = await self._owned_meta(owner, stream_id, as_owners)
        info = StreamInfo(
            meta.completion_id, meta.model, meta.created_ms // 1000, meta.include_usage
        )
        fmt = make_format(info)
        lost_after = await self._check_position(meta, after)
        seat = self.presence.enter(owner, stream_id, None)
        items = (
            self.readers.lost_after(after)
            if lost_after
            else self.readers.remote(stream_id, after, seat)
        )
        return Opened(stream_id, info, fmt, items, seat, self.presence)

    async def _check_position(self, meta: StreamMeta, after: int) -> bool:
        """Whether ``after`` can be a position in a stream produced on another node: 400 if
        not. Waits while it cannot know yet (its producer may not have stored that far):
        at the latest until the stream ends. True when the client is ahead of what a dead
        producer stored (it gets ``producer_lost`` numbered after its position)."""
        interval = self.config.tail_interval_ms / 1000
        while True:
            last = await self.store.last_seq(meta.id)
            if after <= last or (meta.status == StreamStatus.RUNNING and after <= meta.last_seq):
                return False
            status = await self._settled_status(meta)
            if status is StreamStatus.FAILED:
                return True  # it saw events its producer never stored
            if status is not StreamStatus.RUNNING:
                raise errors.beyond(after, last)
            await asyncio.sleep(interval)
            current = await self.store.get_meta(meta.id)
            if current is None:
                raise errors.not_found(meta.id)
            meta = current

    # --- the end of a stream ------------------------------------------------------------
    async def _release_slot(self, stream: LiveStream) -> None:
        """The upstream call is over: the stream stops counting against its user's limit
        before its terminal event goes out."""
        await self.slots.release(stream.slot_user or stream.owner, stream.id)

    async def _finalize(self, stream: LiveStream) -> None:
        t = stream.timings
        try:
            await self.writer.finish(stream)
        finally:
            # A finished stream stays here for RETAIN_S, to answer its status and a resume
            # at its end from memory; what is stored need not stay in memory that long.
            stream.window = min(stream.window, self.config.retain_events)
            stream.trim()
            self.watchdog.forget(stream.id)
            self.metrics.active_streams.dec()
            self.metrics.finished.labels(stream.status.value).inc()
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
                "status": stream.status.value,
                "ttft_ms": round((t.first_token - t.accepted) * 1000, 1) if t.first_token else None,
                "tokens": t.tokens,
                "duration_ms": round((time.perf_counter() - t.accepted) * 1000, 1),
            }
            log.info("%s", _json_line.encode(record).decode())
        asyncio.get_running_loop().call_later(self.config.retain_s, self._forget, stream)

    def _forget(self, stream: LiveStream) -> None:
        if self.live.get(stream.id) is not stream:
            return
        if stream.observer is not None:
            stream.observer = None
            stream.presence.detach()
        if stream.presence.local == 0:
            del self.live[stream.id]
        else:
            asyncio.get_running_loop().call_later(self.config.retain_s, self._forget, stream)
