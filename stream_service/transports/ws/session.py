"""One WebSocket client's session: its frames in, its streams and rooms out.

Frames are handled one at a time, in order, within a rate limit. Each stream the client
reads (one it started, a resume, a room reply) is an engine reader pumped into the
connection's bounded buffer; the producer writes new deltas to the connection directly
once that reader has caught up. Room traffic comes from the room service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from core.errors import ApiError
from core.schemas.chat import parse_chat_request
from core.settings import Settings
from stream_service.engine.engine import Opened, StreamEngine
from stream_service.engine.reader import Signal
from stream_service.rooms.service import RoomService
from stream_service.store.rooms_base import RoomError
from stream_service.transports.ws import protocol
from stream_service.transports.ws.config import WsSettings
from stream_service.transports.ws.connection import (
    CLOSE_POLICY,
    CLOSE_RESTART,
    WsConnection,
)
from stream_service.transports.ws.format import WsEvents
from stream_service.transports.ws.protocol import ProtocolError
from stream_service.transports.ws.rate import RateLimit
from stream_service.transports.ws.room_replies import RoomReplies, room_owner

log = logging.getLogger("rtai.ws")


# client frame type -> the WsSession method that handles it (one table, not one per socket)
_HANDLERS = {
    "chat.send": "_chat_send",
    "resume": "_resume",
    "cancel": "_cancel",
    "join": "_join",
    "leave": "_leave",
    "typing": "_typing",
    "ping": "_ping",
}


class WsSession:
    def __init__(
        self,
        conn: WsConnection,
        engine: StreamEngine,
        settings: Settings,
        ws: WsSettings,
        rooms: RoomService | None,
        replies: RoomReplies | None,
    ) -> None:
        self.conn = conn
        self.user = conn.user
        self.engine = engine
        self.settings = settings
        self.ws = ws
        self.rooms = rooms
        self.replies = replies
        self.rate = RateLimit(ws.messages_per_s, ws.message_burst)
        self._readers: dict[str, asyncio.Task[None]] = {}
        # the last seq this socket was sent of each stream: room replies arrive from the
        # bus at most once, so a gap there is filled by the node's shared reader of it
        self._sent: dict[str, int] = {}
        self._filling: set[str] = set()  # room replies the shared reader sends us now
        # room replies followed through the bus and not ended here yet: when did their
        # last event come (a lost tail has no later event to reveal its gap)
        self._following: dict[str, float] = {}
        self._watch: asyncio.Task[None] | None = None
        self.member = RoomMember(self)

    # --- frames in ----------------------------------------------------------------------
    async def handle(self, data: str | bytes) -> None:
        """One client frame. Bad frames get an ``error``; the session goes on."""
        if not self.rate.allow():
            if self.rate.strikes >= self.ws.rate_strikes:
                # the `rate_limited` errors already buffered go out before the close
                self.conn.close(CLOSE_POLICY, "too many frames: slow down", flush=True)
                return
            self._error("rate_limited", "Too many frames; slow down.")
            return
        ref: str | None = None
        kind = "?"
        try:
            kind, raw = protocol.decode(data)
            ref = raw.get("ref") if isinstance(raw.get("ref"), str) else None
            handler: Callable[[dict[str, Any]], Awaitable[None]] = getattr(self, _HANDLERS[kind])
            await handler(raw)
        except ProtocolError as exc:
            self._error(exc.code, exc.message, exc.ref)
        except ApiError as exc:
            self._error(exc.code or "invalid_request", exc.message, ref)
        except RoomError as exc:
            self._error(exc.code, str(exc), ref)
        except Exception:
            # A store, bus or programming error: logged with its traceback, answered, and
            # the socket goes on (the next frame may well succeed).
            log.exception("ws frame %r of %s failed", kind, self.user)
            self._error("internal_error", "The server failed to handle this frame; retry.", ref)

    def overloaded(self) -> None:
        """A frame arrived while too many wait to be handled: refused like a flood."""
        self.rate.strikes += 1
        if self.rate.strikes >= self.ws.rate_strikes:
            self.conn.close(CLOSE_POLICY, "too many frames: slow down", flush=True)
            return
        self._error("rate_limited", "Too many frames waiting; slow down.")

    async def _ping(self, raw: dict[str, Any]) -> None:
        del raw
        self.conn.send(protocol.PONG)

    async def _chat_send(self, raw: dict[str, Any]) -> None:
        ref = raw.pop("ref", None)
        ref = ref if isinstance(ref, str) else None
        if "room" in raw:
            raw["ref"] = ref
            send = protocol.fields(protocol.RoomSend, raw)
            replies = self._room_replies(ref)
            stream_id = await replies.start(self.user, send.room, send.content, send.model)
            self.conn.send(protocol.created_frame(ref, stream_id, send.room))
            return  # its events reach every member, this one too, through the room
        try:
            chat = parse_chat_request(msgspec.json.encode(raw), self.settings)
        except ApiError as exc:
            raise ProtocolError("invalid_message", exc.message, ref) from None
        stream = await self.engine.create(self.user, chat, time.perf_counter())
        self.conn.send(protocol.created_frame(ref, stream.id, None))
        await self._read(stream.id, 0)

    async def _resume(self, raw: dict[str, Any]) -> None:
        resume = protocol.fields(protocol.Resume, raw)
        await self._read(resume.stream_id, resume.after_seq)

    async def _cancel(self, raw: dict[str, Any]) -> None:
        cancel = protocol.fields(protocol.Cancel, raw)
        await self.engine.cancel(self.user, cancel.stream_id, self._as_owners())

    async def _join(self, raw: dict[str, Any]) -> None:
        join = protocol.fields(protocol.Join, raw)
        await self._rooms(raw).join(self.member, join.room)

    async def _leave(self, raw: dict[str, Any]) -> None:
        leave = protocol.fields(protocol.Join, raw)
        await self._rooms(raw).leave(self.member, leave.room)

    async def _typing(self, raw: dict[str, Any]) -> None:
        typing = protocol.fields(protocol.Typing, raw)
        await self._rooms(raw).set_typing(self.user, typing.room, typing.active)

    def _rooms(self, raw: dict[str, Any]) -> RoomService:
        if self.rooms is None:
            ref = raw.get("ref") if isinstance(raw.get("ref"), str) else None
            raise ProtocolError("rooms_unavailable", "Rooms are not enabled here.", ref)
        return self.rooms

    def _room_replies(self, ref: str | None) -> RoomReplies:
        if self.replies is None:
            raise ProtocolError("rooms_unavailable", "Rooms are not enabled here.", ref)
        return self.replies

    # --- streams out --------------------------------------------------------------------
    async def _read(self, stream_id: str, after: int) -> None:
        """Send the stream's events after ``after`` (replacing this socket's reader of it)."""
        await self._stop_reader(stream_id)
        try:
            opened = await self.engine.open(
                self.user,
                stream_id,
                after,
                lambda _: WsEvents(stream_id),
                sink=self.conn,
                as_owners=self._as_owners(),
            )
        except ApiError as exc:
            self._error(exc.code or "invalid_request", exc.message, None, stream_id)
            return
        task = asyncio.create_task(self._pump(opened), name=f"ws-read-{stream_id}")
        self._readers[stream_id] = task
        task.add_done_callback(lambda t: self._forget(stream_id, t, opened))

    def _as_owners(self) -> list[str]:
        """The rooms this socket joined, as stream owners: a reply of one of them started
        moments ago on another node is waited for like the user's own stream."""
        if self.rooms is None:
            return []
        return [room_owner(room) for room in self.rooms.rooms_of(self.member)]

    def _forget(self, stream_id: str, task: asyncio.Task[None], opened: Opened) -> None:
        # A pump cancelled before it ever ran (a second `resume` of the stream right behind
        # the first) never reached its `finally`: its seat is given back here.
        opened.presence.leave(opened.seat)
        if self._readers.get(stream_id) is task:
            del self._readers[stream_id]

    async def _pump(self, opened: Opened) -> None:
        fmt = opened.format
        send = self.conn.send
        sent = self._sent
        stream_id = opened.stream_id
        try:
            async for item in opened.items:
                if item.__class__ is list:
                    for event in item:
                        if not send(fmt.frame(event)):
                            return  # the socket is closing
                    sent[stream_id] = item[-1].seq
                    if item[-1].terminal:
                        self._following.pop(stream_id, None)
                elif item is Signal.RECONNECT:
                    self.conn.close(CLOSE_RESTART, "this node is restarting: resume by seq")
                    return
                # Signal.PING: the server's protocol pings keep the socket alive
        finally:
            await opened.close()

    async def _stop_reader(self, stream_id: str) -> None:
        task = self._readers.pop(stream_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """The socket is gone: stop its readers, leave its rooms."""
        if self._watch is not None:
            self._watch.cancel()
        for stream_id in list(self._readers):
            await self._stop_reader(stream_id)
        if self.replies is not None:
            for stream_id in list(self._filling):
                self.replies.fills.unsubscribe(stream_id, self)
            self._filling.clear()
        if self.rooms is not None:
            try:
                await self.rooms.leave_all(self.member)
            except Exception:
                log.warning("leaving rooms failed", exc_info=True)

    def _error(
        self, code: str, message: str, ref: str | None = None, stream_id: str | None = None
    ) -> None:
        self.conn.send(protocol.error_frame(code, message, ref, stream_id))

    # --- room traffic -------------------------------------------------------------------
    def room_event(self, stream_id: str, seq: int, frame: bytes) -> bool:
        """A live event of a room reply from the bus: sent if it is the next one; dropped if
        this socket has it (or a reader of that stream is sending it); a gap subscribes to
        the node's shared reader of it after the last seq sent, which then sends the rest."""
        if stream_id in self._readers or stream_id in self._filling:
            return True
        last = self._sent.get(stream_id, 0)
        if seq <= last:
            return True
        if seq == last + 1:
            self._sent[stream_id] = seq
            self._follow(stream_id, frame.startswith(_TERMINAL_HEADS))
            return self.conn.send(frame)
        self._start_fill(stream_id, last)
        return True

    def _start_fill(self, stream_id: str, after: int) -> None:
        """Events of a room reply the bus lost: the node's shared reader of it (one per
        stream, whatever the number of sockets) sends this socket the rest, through its
        end; bus frames of it are dropped meanwhile."""
        if self.replies is None:
            return
        self._filling.add(stream_id)
        self.replies.fills.subscribe(stream_id, after, self)

    def fill_frame(self, stream_id: str, seq: int, frame: bytes, terminal: bool) -> bool:
        """One event from the shared reader (see :class:`.room_fill.ReplyFills`)."""
        if seq <= self._sent.get(stream_id, 0):
            return True
        self._sent[stream_id] = seq
        if terminal:
            self._following.pop(stream_id, None)
        return self.conn.send(frame)

    def fill_ended(self, stream_id: str, error: ApiError | None) -> None:
        self._filling.discard(stream_id)
        if error is not None:  # it could not be read: say so, and stop following it
            self._following.pop(stream_id, None)
            self._error(error.code or "invalid_request", error.message, None, stream_id)

    def _follow(self, stream_id: str, ended: bool) -> None:
        if ended:
            self._following.pop(stream_id, None)
            return
        self._following[stream_id] = asyncio.get_running_loop().time()
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._watch_stalls())

    async def _watch_stalls(self) -> None:
        """A room reply silent on the bus for ``WS_ROOM_REPLY_STALL_S`` is checked against
        the store: if it stored more than this socket was sent (or ended), the rest was
        lost on the bus with no later event to reveal the gap, and a reader sends it."""
        stall = self.ws.room_reply_stall_s
        loop = asyncio.get_running_loop()
        while self._following:
            await asyncio.sleep(stall / 2)
            now = loop.time()
            for stream_id, at in list(self._following.items()):
                if now - at < stall or stream_id in self._readers or stream_id in self._filling:
                    continue
                self._following[stream_id] = now
                try:
                    position = await self.engine.running_position(stream_id)
                except Exception:
                    log.debug("checking room reply %s failed", stream_id, exc_info=True)
                    continue
                sent = self._sent.get(stream_id, 0)
                unseen = position is None or position > sent  # it ended, or went on unseen
                if (
                    unseen
                    and stream_id in self._following
                    and stream_id not in self._readers
                    and stream_id not in self._filling
                ):
                    self._start_fill(stream_id, sent)

    def joined(self, streams: list[tuple[str, int]]) -> None:
        """A ``joined`` went out: the replies still running start after their ``last_seq``
        (the client resumes the part before it when it wants it)."""
        for stream_id, last in streams:
            self._sent[stream_id] = max(self._sent.get(stream_id, 0), last)
            self._follow(stream_id, ended=False)


_EVENT_HEAD = b'{"type":"'
_TERMINAL_HEADS = (b'{"type":"done"', b'{"type":"error"')
_JOINED_HEAD = b'{"type":"joined"'


class RoomMember:
    """What the room service sends to (its ``Member``): this socket, with room replies'
    events checked for gaps on the way (see :meth:`WsSession.room_event`)."""

    __slots__ = ("session",)

    def __init__(self, session: WsSession) -> None:
        self.session = session

    @property
    def user(self) -> str:
        return self.session.user

    def send(self, frame: bytes) -> bool:
        session = self.session
        if frame.startswith(_JOINED_HEAD):
            joined = msgspec.json.decode(frame, type=_Joined)
            session.joined([(s.stream_id, s.last_seq) for s in joined.streams])
        elif frame.startswith(_EVENT_HEAD):
            head = frame[:120]
            sid_at = head.find(b'"stream_id":"')
            if sid_at > 0:
                sid_end = head.index(b'"', sid_at + 13)
                seq_at = head.index(b'"seq":', sid_end) + 6
                seq_end = seq_at
                while head[seq_end : seq_end + 1].isdigit():
                    seq_end += 1
                stream_id = head[sid_at + 13 : sid_end].decode()
                return session.room_event(stream_id, int(head[seq_at:seq_end]), frame)
        return session.conn.send(frame)


class _JoinedStream(msgspec.Struct):
    stream_id: str
    last_seq: int


class _Joined(msgspec.Struct):
    streams: list[_JoinedStream] = []
