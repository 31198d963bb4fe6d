"""A stream whose producer runs on this node: its recent events in memory, and its readers.

Events are appended to one shared list (encoded once); each reader keeps its own position,
so a slow reader costs no memory per event. Only the newest ``window`` events are kept:
a reader that falls behind the window catches up from the store.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from stream_service.engine.events import Event, StreamInfo
from stream_service.sse import Outlet


@dataclass(slots=True)
class Timings:
    accepted: float
    upstream_sent: float | None = None
    first_token: float | None = None
    first_byte: float | None = None
    last_token: float | None = None
    tokens: int = 0


@dataclass(eq=False, slots=True)
class DirectReader:
    """A reader that has every event so far and waits (``parked``) while the producer
    writes it each new delta itself, through its response's :class:`Outlet`."""

    outlet: Outlet
    info: StreamInfo | None
    after: int  # the last seq it was sent
    parked: asyncio.Future[None]

    def deliver(self, event: Event) -> bool:
        """Write ``event``; False when this reader must take over again (nothing or the
        last write is still on its way)."""
        if event.seq != self.after + 1 or not self.outlet.write(event.render(self.info)):
            return False
        self.after = event.seq
        return self.outlet.pending is None


@dataclass(eq=False, slots=True)
class LiveStream:
    id: str
    owner: str
    info: StreamInfo
    window: int
    timings: Timings
    events: list[Event] = field(default_factory=list)
    base: int = 1  # seq of events[0]
    flushed_seq: int = 0
    readers: int = 0
    detached_since: float = field(default_factory=time.monotonic)
    remote_reader_until_ms: int = 0
    finished: bool = False
    status: str = "running"
    admitted: bool = False  # slot granted; nothing is stored before that
    meta_written: bool = False
    flush_queued: bool = False
    last_heartbeat: float = 0.0
    cancel_reason: str | None = None
    slot_index: int | None = None
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Resolved by the engine once the per-user slot is granted (True) or refused (False).
    admission: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)
    direct: list[DirectReader] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.base + len(self.events) - 1

    def append(self, kind: str, payload: object) -> Event:
        event = Event.make(self.base + len(self.events), kind, payload)
        self.events.append(event)
        self.wake()
        return event

    def append_delta(self, text: str) -> int:
        """Append a ``delta`` event (the per-token path): written at once to the direct
        readers, the others woken. Its seq."""
        seq = self.base + len(self.events)
        event = Event.delta(seq, text)
        self.events.append(event)
        if self.direct:
            handed_back = [reader for reader in self.direct if not reader.deliver(event)]
            for reader in handed_back:
                self.release(reader)
        self._wake_waiters()
        return seq

    def release(self, reader: DirectReader) -> None:
        """Hand a direct reader back to its own task (it wakes and reads on from memory)."""
        self.direct = [r for r in self.direct if r is not reader]
        if not reader.parked.done():
            reader.parked.set_result(None)

    def wake(self) -> None:
        """Wake every reader (a new non-delta event, the keepalive tick, a drain, the end)."""
        readers, self.direct = self.direct, []
        for reader in readers:
            if not reader.parked.done():
                reader.parked.set_result(None)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        if not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for a new event or a wake-up (the engine's keepalive tick, a drain). One
        future per waiting reader, no timer: the hot path stays cheap."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def since(self, seq: int) -> list[Event]:
        """Events with a seq above ``seq`` that are in memory."""
        start = max(0, seq + 1 - self.base)
        return self.events[start:]

    def unflushed(self) -> list[Event]:
        return self.since(self.flushed_seq)

    def trim(self) -> None:
        """Drop flushed events beyond the window (readers behind it go to the store)."""
        excess = len(self.events) - self.window
        droppable = self.flushed_seq - self.base + 1
        drop = min(excess, droppable)
        if drop > 0:
            del self.events[:drop]
            self.base += drop

    def attach(self) -> None:
        self.readers += 1

    def detach(self) -> None:
        self.readers -= 1
        if self.readers == 0:
            self.detached_since = time.monotonic()
