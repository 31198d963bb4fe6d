"""A stream whose producer runs on this node: its recent events in memory, and its readers.

Events are appended to one shared list; each reader keeps its own position, so a slow
reader costs no memory per event. Only the newest ``window`` events are kept: a reader
that falls behind the window catches up from the store.

Direct delivery: a reader that has every event so far parks, and the producer writes each
new delta to it itself (rendered once per format, written to each reader's :class:`Sink`):
no task switch per token and reader. Anything other than a delta wakes the readers, which
then read on by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream_service.engine.events import Event, Format, Sink, StreamInfo
from stream_service.engine.types import EventKind, StopReason, StreamStatus


@dataclass(slots=True)
class Timings:
    accepted: float
    upstream_sent: float | None = None
    first_token: float | None = None
    first_byte: float | None = None
    last_token: float | None = None
    tokens: int = 0  # deltas received; at the end, the upstream's completion_tokens if it said


@dataclass(eq=False, slots=True)
class DirectReader:
    """A caught-up reader, parked while the producer writes it new deltas itself."""

    sink: Sink
    after: int  # the last seq it was sent
    parked: asyncio.Future[None]

    def deliver(self, seq: int, frame: bytes) -> bool:
        """Write one frame; False when this reader must take over again (nothing or the
        last write is still on its way)."""
        if seq != self.after + 1 or not self.sink.write(frame):
            return False
        self.after = seq
        return self.sink.pending is None


@dataclass(eq=False, slots=True)
class LiveStream:
    id: str
    owner: str  # who reads it: a user, or ``room:<id>`` (every member)
    info: StreamInfo
    window: int
    timings: Timings
    slot_user: str = ""  # whose per-user limit it counts against, when not the owner's
    # RESUME_GRACE_S, or lower for this stream (stream_options.resume_grace_s)
    grace_s: float | None = None
    # sees every event as it is appended (a room reply's publisher); holds the stream read
    observer: Callable[[Event], None] | None = None
    events: list[Event] = field(default_factory=list)
    base: int = 1  # seq of events[0]
    flushed_seq: int = 0
    finished: bool = False
    status: StreamStatus = StreamStatus.RUNNING
    lease_lost: bool = False  # another node declared it lost: the store tells its story
    stop_reason: StopReason | None = None
    ending: tuple[EventKind, object] | None = None  # the terminal event, until it is appended
    task: asyncio.Task[None] | None = None
    presence: Presence = field(default_factory=lambda: Presence())
    # direct readers, grouped by format so each delta is rendered once per format
    direct: dict[Format, list[DirectReader]] = field(default_factory=dict)
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.base + len(self.events) - 1

    def append(self, kind: EventKind, payload: object) -> Event:
        event = Event.make(self.base + len(self.events), kind, payload)
        self.events.append(event)
        if self.observer is not None:
            self.observer(event)
        self.wake()
        return event

    def append_delta(self, text: str) -> int:
        """Append a text-only ``delta`` (the per-token path): written at once to the direct
        readers, the others woken. Returns its seq."""
        return self.push_delta(Event.delta(self.base + len(self.events), text))

    def append_rich_delta(self, text: str, fields: dict[str, Any], logprobs: Any) -> int:
        """Append a ``delta`` that carries more than text (tool call fragments, refusal,
        reasoning, logprobs: the upstream's delta fields as sent), delivered as any delta."""
        return self.push_delta(
            Event.rich_delta(self.base + len(self.events), text, fields, logprobs)
        )

    def push_delta(self, event: Event) -> int:
        """Append a built ``delta`` event (its seq must be the next one)."""
        seq = event.seq
        self.events.append(event)
        if self.observer is not None:
            self.observer(event)
        if self.direct:
            handed_back: list[tuple[Format, DirectReader]] | None = None
            for fmt, readers in self.direct.items():
                frame = fmt.frame(event)
                for reader in readers:
                    if not reader.deliver(seq, frame):
                        handed_back = handed_back or []
                        handed_back.append((fmt, reader))
            if handed_back:
                for fmt, reader in handed_back:
                    self.release(fmt, reader)
        if self._waiters:
            self._wake_waiters()
        return seq

    def park(self, fmt: Format, reader: DirectReader) -> None:
        self.direct.setdefault(fmt, []).append(reader)

    def release(self, fmt: Format, reader: DirectReader) -> None:
        """Hand a direct reader back to its own task (it wakes and reads on from memory)."""
        readers = self.direct.get(fmt)
        if readers is not None:
            if reader in readers:
                readers.remove(reader)
            if not readers:
                del self.direct[fmt]
        if not reader.parked.done():
            reader.parked.set_result(None)

    def wake(self) -> None:
        """Wake every reader (a new non-delta event, the keepalive tick, a drain, the end)."""
        groups, self.direct = self.direct, {}
        for readers in groups.values():
            for reader in readers:
                if not reader.parked.done():
                    reader.parked.set_result(None)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Wait for a new event or a wake-up. One future per waiting reader, no timer."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def since(self, seq: int) -> list[Event]:
        """Events with a seq above ``seq`` that are in memory."""
        return self.events[max(0, seq + 1 - self.base) :]

    def unflushed(self) -> list[Event]:
        return self.since(self.flushed_seq)

    def trim(self) -> None:
        """Drop flushed events beyond the window (readers behind it go to the store)."""
        drop = min(len(self.events) - self.window, self.flushed_seq - self.base + 1)
        if drop > 0:
            del self.events[:drop]
            self.base += drop


@dataclass(slots=True)
class Presence:
    """Readers of one live stream, on this node and (by heartbeat) elsewhere."""

    local: int = 0
    detached_since: float = field(default_factory=time.monotonic)
    remote_until_ms: int = 0
    was_read: bool = False  # a reader came (here or elsewhere) since it started
    unread_stored: bool = False  # the store says nobody reads it (see Watchdog.check)

    def attach(self) -> None:
        self.local += 1
        self.was_read = True

    def detach(self) -> None:
        self.local -= 1
        if self.local == 0:
            self.detached_since = time.monotonic()
