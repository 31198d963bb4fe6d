"""uvicorn's WebSocket protocol (websockets' sans-I/O implementation), lighter per socket.

An idle socket is mostly what the server keeps for it. uvicorn's protocol keeps the parsed
handshake request (so does websockets' parser) and its response for the socket's life,
and an ``asyncio.Queue`` (three deques and an event) plus an ``asyncio.Event`` (one
deque), each deque a 760-byte block allocated up front: ~8 KB of a ~28 KB idle socket.
:class:`LeanWebSocketProtocol` lets go of the handshake once it is answered, and swaps
the queue and the event for equivalents that allocate only when someone waits. uvicorn's
own code runs unchanged (its version is pinned in the lock file;
``tests/integration/ws/test_server_protocol.py`` checks that handshakes, frames, pings
and closes still behave; ``make bench`` shows the memory).

Each accepted socket's scope also carries ``scope["extensions"]["rtai.frame_writer"]``: a
:class:`FrameWriter` that writes a text frame to the transport at once (websockets frames
it, as uvicorn's ``send`` would) when nothing stands in the way: the handshake is answered,
no close was sent, the client is connected and writing is not paused. Otherwise it writes
nothing and says so, and the caller takes the ASGI path (which waits for a paused
transport). With no extension negotiated (permessage-deflate is off unless configured) it
frames the text itself (:func:`text_frame`). Per token that saves the socket's writer
task a wake-up, a turn of the loop, two send wrappers and a decode and re-encode of the
frame.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request
from websockets.protocol import State

EXTENSION = "rtai.frame_writer"


class Inbox:
    """What uvicorn uses of ``asyncio.Queue`` (``put_nowait``, ``get``, ``empty``,
    ``qsize``), unbounded: a list, and futures only while a reader waits."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
                    break

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_next(waiter)  # it was woken, then cancelled: pass it on
                raise
            finally:
                self._waiters.remove(waiter)
        return self._items.pop(0)

    def _wake_next(self, skip: asyncio.Future[None]) -> None:
        for waiter in self._waiters or ():
            if waiter is not skip and not waiter.done():
                waiter.set_result(None)
                return

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Flag:
    """What uvicorn uses of ``asyncio.Event`` (``set``, ``clear``, ``is_set``, ``wait``):
    futures only while someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter


class FrameWriter:
    """``write(frame)``: one text frame (UTF-8 bytes) to an open socket, now; False if it
    cannot go out this way (nothing was written)."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> bool:
        protocol = self._protocol
        if (
            protocol.close_sent
            or protocol.disconnected
            or not protocol.handshake_complete
            or protocol.initial_response is not None
            or not protocol.writable.is_set()
        ):
            return False
        conn = protocol.conn
        if conn.state is not State.OPEN:  # the client's close came in: the ASGI path says so
            return False
        if conn.extensions:  # permessage-deflate: websockets compresses and frames it
            try:
                conn.send_text(frame)
            except InvalidState:
                return False
            protocol.transport.write(b"".join(conn.data_to_send()))
        else:
            protocol.transport.write(text_frame(frame))
        return True


def text_frame(data: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 5.2), what a server sends with no
    extension: websockets' ``Frame.serialize`` gives the same bytes
    (``tests/integration/ws/test_server_protocol.py``) at a sixth of the cost, which per
    token was a tenth of the node's CPU."""
    size = len(data)
    if size < 126:
        return b"\x81%c%b" % (size, data)
    if size < 65536:
        return b"\x81\x7e%b%b" % (size.to_bytes(2, "big"), data)
    return b"\x81\x7f%b%b" % (size.to_bytes(8, "big"), data)


def frame_writer(scope: Any) -> FrameWriter | None:
    """The socket's :class:`FrameWriter`, if its server gave one."""
    extensions = scope.get("extensions")
    return extensions.get(EXTENSION) if extensions else None


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, keeping nothing of the handshake once it is answered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if not self.close_sent:  # the handshake is going to the app (not refused here)
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[EXTENSION] = FrameWriter(self)
        # The scope has what the app needs of the request; nothing reads it again. The
        # request's headers go too: websockets' parser keeps the request for good.
        self.request = None  # type: ignore[assignment]
        event.headers.clear()

    def start_keepalive(self) -> None:
        # called once, as the accepted handshake's response has gone out
        super().start_keepalive()
        self.response = None  # type: ignore[assignment]
