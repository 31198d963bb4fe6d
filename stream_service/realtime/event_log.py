"""The server events of one session, in order: what the attached client reads from and
what a resume replays.

One log per session and one reader position per socket: the live path and the replay are
the same read, so a resume cannot lose the events that arrive while it catches up. The log
holds the events of the last ``max_age_s`` seconds, at most ``max_bytes`` of them; the
oldest go first. The id of the last event dropped is remembered, so a client whose last
event was dropped (for age) while it was away still resumes without a gap.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class Gap(Exception):
    """The reader's position was dropped from the log (it fell too far behind)."""


class EventLog:
    def __init__(self, max_bytes: int, max_age_s: float = float("inf")) -> None:
        self._frames: deque[tuple[str, float]] = deque()  # (frame, monotonic time appended)
        self._ids: deque[str | None] = deque()
        self._seq_of: dict[str, int] = {}
        self._first = 0  # seq of self._frames[0]
        self._bytes = 0
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._dropped_id: str | None = None  # the id of the last event dropped (seq _first - 1)
        self._grew = asyncio.Event()

    @property
    def next_seq(self) -> int:
        return self._first + len(self._frames)

    def append(self, frame: str, event_id: str | None, at: float) -> None:
        if event_id is not None:
            self._seq_of[event_id] = self.next_seq
        self._frames.append((frame, at))
        self._ids.append(event_id)
        self._bytes += len(frame)
        oldest = time.monotonic() - self._max_age_s
        frames = self._frames
        while len(frames) > 1 and (self._bytes > self._max_bytes or frames[0][1] < oldest):
            old, _ = frames.popleft()
            old_id = self._ids.popleft()
            if old_id is not None:
                self._seq_of.pop(old_id, None)
            self._dropped_id = old_id
            self._bytes -= len(old)
            self._first += 1
        self._grew.set()

    def seq_after(self, event_id: str) -> int | None:
        """The position just after ``event_id``, or None if the log cannot resume from it."""
        seq = self._seq_of.get(event_id)
        if seq is not None:
            return seq + 1
        if event_id == self._dropped_id:
            return self._first  # everything after it is still held
        return None

    def read(self, seq: int) -> list[tuple[str, float]]:
        """Frames from position ``seq`` on (empty when the reader is caught up)."""
        if seq < self._first:
            raise Gap(seq)
        start = seq - self._first
        if start >= len(self._frames):
            return []
        if start == len(self._frames) - 1:
            return [self._frames[-1]]
        return [self._frames[i] for i in range(start, len(self._frames))]

    async def wait_beyond(self, seq: int) -> None:
        """Return once the log holds a frame at ``seq``, or it was poked (callers re-check)."""
        if self.next_seq > seq:
            return
        self._grew.clear()
        await self._grew.wait()

    def poke(self) -> None:
        """Wake the readers without a new frame (the session is ending)."""
        self._grew.set()
