"""The watchdog: the facts that stop a producer, and the ticks that keep readers alive.

Every ``POLL_INTERVAL_MS`` it reads the cross-node facts of this node's running streams
from the store (one batched read): a cancel requested on any node, readers heartbeating
from other nodes. It stops a producer whose upstream sent nothing for
``UPSTREAM_FIRST_TOKEN_S`` before its first token or ``UPSTREAM_IDLE_S`` between two, or
that nobody (on any node) has read for ``RESUME_GRACE_S`` (or the stream's own lower
grace); and renews each producer's lease (a producer that learns it lost its lease stops).
It also tells the store when a stream becomes unread and read again (one write each time),
so a create anywhere that finds its user at the limit cancels an unread stream first (SPEC
section 11). Twice per ``KEEPALIVE_S`` it wakes every stream's readers, so an idle one can
ping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stream_service.engine.live import LiveStream
from stream_service.engine.types import StopReason
from stream_service.store import LeaseLost, StreamStore
from stream_service.store.base import now_ms

log = logging.getLogger("rtai.stream.watchdog")


@dataclass(frozen=True, slots=True)
class Limits:
    keepalive_s: float
    resume_grace_s: float
    poll_interval_s: float
    lease_ttl_s: float
    first_token_s: float
    idle_s: float
    # a stream that never had a reader counts as unread after this long (its client may
    # still be connecting: POST /streams, then GET its events_url)
    unread_after_s: float = 2.0


class Watchdog:
    def __init__(
        self,
        store: StreamStore,
        limits: Limits,
        *,
        node: str,
        streams: Callable[[], Iterable[LiveStream]],
        stored: Callable[[LiveStream], bool],
        stop: Callable[[LiveStream, StopReason], None],
    ) -> None:
        self.store = store
        self.limits = limits
        self.node = node
        self._streams = streams
        self._stored = stored
        self._stop = stop
        self._beats: dict[str, float] = {}  # stream id -> last lease renewal (monotonic)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name="watchdog-poll"),
            asyncio.create_task(self._keepalive_loop(), name="watchdog-keepalive"),
            asyncio.create_task(self._lease_loop(), name="watchdog-leases"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self, stream_id: str) -> None:
        self._beats.pop(stream_id, None)

    async def _keepalive_loop(self) -> None:
        """Wake idle readers twice per keepalive interval: they ping if silent for half of
        it, so no connection is ever silent for a whole ``KEEPALIVE_S``."""
        while True:
            await asyncio.sleep(self.limits.keepalive_s / 2)
            for stream in list(self._streams()):
                stream.wake()

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.poll_interval_s)
            try:
                await self.check()
            except Exception:
                log.warning("watchdog poll failed", exc_info=True)

    def overdue(self, stream: LiveStream, perf_now: float) -> StopReason | None:
        """Whether the upstream has been silent too long (before or between tokens)."""
        t = stream.timings
        if t.last_token is None:
            if (
                t.upstream_sent is not None
                and perf_now - t.upstream_sent > self.limits.first_token_s
            ):
                return StopReason.FIRST_TOKEN_TIMEOUT
        elif perf_now - t.last_token > self.limits.idle_s:
            return StopReason.UPSTREAM_TIMEOUT
        return None

    async def renew_leases(self) -> None:
        """Renew the lease of every stored stream that is due (every third of the TTL),
        at once. A stream whose producer ended keeps its lease until its final flush and
        status are written (a slow store must not let another node declare it lost)."""
        mono = time.monotonic()
        lease_until = now_ms() + int(self.limits.lease_ttl_s * 1000)
        beats = [
            self._renew(s, lease_until)
            for s in list(self._streams())
            if self._stored(s) and not s.lease_lost and self._due(s, mono)
        ]
        if beats:
            await asyncio.gather(*beats, return_exceptions=True)

    async def _lease_loop(self) -> None:
        """Apart from the poll: a slow poll never delays a renewal. Ticks as often as the
        poll, so each round renews only the streams due (their renewals stay spread out by
        when each stream started, not bunched into one burst)."""
        interval = min(self.limits.poll_interval_s, self.limits.lease_ttl_s / 6)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_leases()
            except Exception:
                log.warning("lease renewal failed", exc_info=True)

    async def check(self) -> None:
        """One round of the cross-node facts: cancel flags, remote readers, timeouts and
        the grace window of this node's running streams."""
        running = [
            s for s in self._streams() if not s.finished and self._stored(s) and not s.lease_lost
        ]
        if not running:
            return
        mono = time.monotonic()
        wall = now_ms()
        facts = await self.store.poll([s.id for s in running])
        perf = time.perf_counter()
        marks = []
        for stream in running:
            presence = stream.presence
            fact = facts.get(stream.id)
            if fact is not None:
                presence.remote_until_ms = fact.reader_until_ms
                if fact.reader_until_ms >= wall:  # read on another node: the grace restarts
                    presence.detached_since = mono
                    presence.was_read = True
                if fact.cancel:
                    self._stop(stream, StopReason.CLIENT)
                    continue
            if (reason := self.overdue(stream, perf)) is not None:
                self._stop(stream, reason)
                continue
            unread = presence.local == 0 and presence.remote_until_ms < wall
            if unread and mono - presence.detached_since >= self.grace_s(stream):
                self._stop(stream, StopReason.NO_READER)
                continue
            flag = self.unread(stream, mono, wall)
            if flag != presence.unread_stored:
                since = wall - int((mono - presence.detached_since) * 1000) if flag else 0
                marks.append(self.mark(stream, since))
        if marks:
            await asyncio.gather(*marks)

    def grace_s(self, stream: LiveStream) -> float:
        """How long it may go unread: its own grace once a reader has left, the configured
        one before any came (the client may still be connecting)."""
        if stream.grace_s is None or not stream.presence.was_read:
            return self.limits.resume_grace_s
        return stream.grace_s

    def unread(self, stream: LiveStream, mono: float, wall: int) -> bool:
        """Nobody reads it, on any node, and it no longer waits for its first reader."""
        presence = stream.presence
        if stream.finished or presence.local or presence.remote_until_ms >= wall:
            return False
        return presence.was_read or mono - presence.detached_since >= self.limits.unread_after_s

    async def mark(self, stream: LiveStream, unread_since_ms: int) -> None:
        """Tell the store whether the stream is unread (since when) or read (0)."""
        try:
            await self.store.mark_unread(stream.id, unread_since_ms)
        except Exception:
            log.warning("could not mark %s unread=%s", stream.id, bool(unread_since_ms))
            return  # the next poll tries again
        stream.presence.unread_stored = bool(unread_since_ms)

    def _due(self, stream: LiveStream, mono: float) -> bool:
        """Whether the stream's lease is due for renewal (every third of its TTL)."""
        if mono - self._beats.get(stream.id, 0.0) < self.limits.lease_ttl_s / 3:
            return False
        self._beats[stream.id] = mono
        return True

    async def _renew(self, stream: LiveStream, lease_until: int) -> None:
        try:
            # what it has produced so far: a bound for the Last-Event-ID other nodes accept
            await self.store.heartbeat(stream.id, self.node, lease_until, stream.last_seq)
        except LeaseLost:
            if stream.finished:
                return  # its final status was written meanwhile
            log.warning("lost the lease of %s; stopping its producer", stream.id)
            self._stop(stream, StopReason.LEASE_LOST)
