"""Gap-fill of room replies: one engine reader per stream per node, shared by every socket
of this node that needs events of that reply the bus did not bring.

Bus delivery is at-most-once, and a bus loss hits every socket of a node at once: each of
them sees the same gap. Instead of one reader per socket (each a seat under
``MAX_READERS_PER_STREAM``, so sockets past the limit got ``too_many_readers`` and never
the rest of the reply), the node opens one reader of the stream, from the lowest position
any of its sockets needs, and hands each event, rendered once, to every socket that has not
had it, through ``done``. A socket that needs events the shared reader has already passed
restarts it from that position (the others drop what they already have, by ``seq``).

The reader is opened as the stream's owner (``room:<id>``): the sockets were let in by
the room (they are members), and the seat is the room's, not one member's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import ApiError
from stream_service.engine import errors
from stream_service.engine.engine import StreamEngine
from stream_service.engine.events import Event, Format
from stream_service.engine.reader import Signal
from stream_service.transports.ws.format import WsEvents

log = logging.getLogger("rtai.ws.rooms")


class FillTarget(Protocol):
    """A socket that gets a reply's events from the shared reader (compared by identity)."""

    def fill_frame(self, stream_id: str, seq: int, frame: bytes, terminal: bool) -> bool:
        """One event (the socket drops it if it has it); False: stop sending to it."""

    def fill_ended(self, stream_id: str, error: ApiError | None) -> None:
        """The shared reader is done with this socket (``error``: it could not read)."""


@dataclass(eq=False, slots=True)
class _Fill:
    stream_id: str
    targets: dict[FillTarget, int] = field(default_factory=dict)  # -> last seq it has
    position: int = -1  # where the reader is (-1: not started; it starts at the lowest)
    restart: bool = False
    task: asyncio.Task[None] | None = None


class ReplyFills:
    def __init__(self, engine: StreamEngine, *, record_wait_s: float) -> None:
        self.engine = engine
        self.record_wait_s = record_wait_s
        self._fills: dict[str, _Fill] = {}

    def readers(self) -> int:
        """Shared readers open now (tests, metrics)."""
        return len(self._fills)

    def subscribe(self, stream_id: str, after: int, target: FillTarget) -> None:
        """Send ``target`` the events of ``stream_id`` after ``after``, to the end."""
        fill = self._fills.get(stream_id)
        if fill is None:
            fill = self._fills[stream_id] = _Fill(stream_id)
            fill.targets[target] = after
            fill.task = asyncio.ensure_future(self._run(fill))
            return
        fill.targets[target] = after
        if fill.position >= 0 and after < fill.position and not fill.restart:
            # it needs events the reader handed out already: read again from there
            fill.restart = True
            if fill.task is not None:
                fill.task.cancel()

    def unsubscribe(self, stream_id: str, target: FillTarget) -> None:
        fill = self._fills.get(stream_id)
        if fill is None or fill.targets.pop(target, None) is None:
            return
        if not fill.targets and fill.task is not None:
            fill.task.cancel()  # nobody left to read for

    async def stop(self) -> None:
        tasks = [f.task for f in self._fills.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, fill: _Fill) -> None:
        error: ApiError | None = None
        try:
            while fill.targets:
                try:
                    await self._read(fill)
                    break
                except asyncio.CancelledError:
                    if not fill.restart or not fill.targets:
                        raise
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
                    fill.restart = False
        except ApiError as exc:
            error = exc
        except asyncio.CancelledError:
            pass
        except Exception:
            log.warning("filling room reply %s failed", fill.stream_id, exc_info=True)
        finally:
            if self._fills.get(fill.stream_id) is fill:
                del self._fills[fill.stream_id]
            for target in list(fill.targets):
                with contextlib.suppress(Exception):
                    target.fill_ended(fill.stream_id, error)
            fill.targets.clear()

    async def _read(self, fill: _Fill) -> None:
        stream_id = fill.stream_id
        after = min(fill.targets.values())
        fill.position = after  # a socket subscribing behind it from now on restarts it
        opened = await self.engine.open(
            await self._owner(stream_id),
            stream_id,
            after,
            lambda _: WsEvents(stream_id),
        )  # an id made for its room moments ago waits for its record (the engine's rule)
        try:
            async for item in opened.items:
                if item.__class__ is list:
                    events: list[Event] = item
                    self._hand_out(fill, opened.format, events)
                    fill.position = events[-1].seq
                    if events[-1].terminal or not fill.targets:
                        return
                elif item is Signal.RECONNECT:
                    return  # this node drains: its sockets are asked to reconnect
        finally:
            await opened.close()

    @staticmethod
    def _hand_out(fill: _Fill, fmt: Format, events: list[Event]) -> None:
        frames = [(e.seq, fmt.frame(e), e.terminal) for e in events]
        for target, has in list(fill.targets.items()):
            for seq, frame, terminal in frames:
                if seq <= has:
                    continue
                has = seq
                if not target.fill_frame(fill.stream_id, seq, frame, terminal):
                    fill.targets.pop(target, None)  # its socket is closing
                    break
            else:
                if target in fill.targets:
                    fill.targets[target] = has

    async def _owner(self, stream_id: str) -> str:
        """Whose stream it is (a room's reply: ``room:<id>``)."""
        live = self.engine.live.get(stream_id)
        if live is not None:
            return live.owner
        deadline = asyncio.get_running_loop().time() + self.record_wait_s
        while True:
            meta = await self.engine.store.get_meta(stream_id)
            if meta is not None:
                return meta.owner
            if asyncio.get_running_loop().time() >= deadline:
                raise errors.not_found(stream_id)
            await asyncio.sleep(0.05)
