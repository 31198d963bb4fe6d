"""Reader presence: who reads which stream on this node, within limits, and the heartbeats
that tell a producer on another node that its stream is still read.

A stream is "read" while a reader on any node holds it: readers on the producer's node
are counted in its :class:`~.live.Presence`; readers elsewhere heartbeat the stream's
record (``reader_until``), which the producer's watchdog polls. Limits per node:
``MAX_READERS_PER_STREAM`` open readers of one stream and ``MAX_READERS_PER_USER`` of one
user (429 ``too_many_readers`` beyond them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass

from stream_service.engine.errors import too_many_readers
from stream_service.engine.live import LiveStream
from stream_service.store import StreamStore
from stream_service.store.base import now_ms

log = logging.getLogger("rtai.stream.presence")


@dataclass(eq=False, slots=True)
class Seat:
    """One open reader: given back with :meth:`ReaderPresence.leave`."""

    user: str
    stream_id: str
    live: LiveStream | None
    heartbeats: bool = False  # counted in the remote heartbeats (a position that is real)
    open: bool = True


class ReaderPresence:
    def __init__(
        self,
        store: StreamStore,
        *,
        per_stream: int,
        per_user: int,
        heartbeat_s: float,
    ) -> None:
        self.store = store
        self.per_stream = per_stream
        self.per_user = per_user
        self.heartbeat_s = heartbeat_s
        self._by_stream: Counter[str] = Counter()
        self._by_user: Counter[str] = Counter()
        self._remote: Counter[str] = Counter()  # streams produced elsewhere, read here
        self._task: asyncio.Task[None] | None = None

    @property
    def open_readers(self) -> int:
        return sum(self._by_user.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat_loop(), name="reader-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def enter(self, user: str, stream_id: str, live: LiveStream | None) -> Seat:
        """Take a reader's seat, or raise 429 ``too_many_readers``."""
        if self._by_stream[stream_id] >= self.per_stream:
            raise too_many_readers("of this stream", self.per_stream)
        if self._by_user[user] >= self.per_user:
            raise too_many_readers("for this user", self.per_user)
        self._by_stream[stream_id] += 1
        self._by_user[user] += 1
        if live is not None:
            live.presence.attach()
        return Seat(user, stream_id, live)

    async def start_heartbeats(self, seat: Seat) -> None:
        """A reader on a node that is not the producer's: it holds the grace window open
        from now on (the first heartbeat is written before it returns)."""
        if seat.heartbeats or seat.live is not None:
            return
        seat.heartbeats = True
        self._remote[seat.stream_id] += 1
        await self.store.touch_reader(seat.stream_id, self._until())

    def leave(self, seat: Seat) -> None:
        """Give the seat back (once; later calls do nothing)."""
        if not seat.open:
            return
        seat.open = False
        _decrement(self._by_stream, seat.stream_id)
        _decrement(self._by_user, seat.user)
        if seat.live is not None:
            seat.live.presence.detach()
            seat.live = None
        if seat.heartbeats:
            seat.heartbeats = False
            _decrement(self._remote, seat.stream_id)

    def _until(self) -> int:
        return now_ms() + int(self.heartbeat_s * 2500)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            ids = list(self._remote)
            if ids:
                until = self._until()
                results = await asyncio.gather(
                    *(self.store.touch_reader(sid, until) for sid in ids), return_exceptions=True
                )
                failed = sum(isinstance(r, BaseException) for r in results)
                if failed:
                    log.warning("%d reader heartbeats failed", failed)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
