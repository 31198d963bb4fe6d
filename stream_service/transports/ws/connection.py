"""One WebSocket connection's outgoing side: a bounded send buffer and the task that
empties it.

Everything bound for the client (stream events written by a producer directly, frames of
readers catching up, room traffic from the bus) is handed to :meth:`WsConnection.send`,
which never waits: it writes the frame to the socket in place when nothing is buffered or
being sent ahead of it and the socket can take it now (the server's frame writer), else
appends it to the buffer and wakes the writer. A client that stops
reading lets the buffer fill; past ``WS_SEND_BUFFER_BYTES`` the socket is closed with
4008, which tells the client to reconnect and resume by ``seq``. Memory per connection
stays bounded whatever the client does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from stream_service.transports.ws.server_protocol import FrameWriter

log = logging.getLogger("rtai.ws")

SendMessage = Callable[[dict[str, Any]], Awaitable[None]]

# Close codes (docs/streaming.md): what the client should do next.
CLOSE_UNAUTHORIZED = 4401  # credentials missing or invalid: get a new ticket / token
CLOSE_SLOW = 4008  # the send buffer overflowed: reconnect, resume by seq
CLOSE_POLICY = 1008  # kept flooding past the rate limit
CLOSE_RESTART = 1012  # the node drains (deploy): reconnect (another node), resume by seq
CLOSE_INTERNAL = 1011  # the server could not go on with this socket: reconnect, resume

# A close that lets the frames already buffered go first waits at most this long for them.
FLUSH_S = 1.0


class WsConnection:
    """Implements the room service's ``Member`` and the engine's ``Sink``."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_closing",
        "_direct",
        "_drained",
        "_send_message",
        "_wake",
        "_writer",
        "close_code",
        "limit",
        "on_close",
        "user",
    )

    def __init__(
        self,
        user: str,
        send_message: SendMessage,
        limit_bytes: int,
        direct: FrameWriter | None = None,
    ) -> None:
        self.user = user
        self.limit = limit_bytes
        # Set by close(): nothing more is buffered and the server ends the socket. An idle
        # socket holds no task, no event and no buffer (each asyncio primitive and deque
        # is ~0.7 KB: at thousands of sockets they were a tenth of an idle one's memory).
        self.close_code: int | None = None
        self._closing: asyncio.Task[None] | None = None  # the close message going out
        self._send_message = send_message
        # the server's own writer (see server_protocol): a frame goes out in place when
        # nothing is buffered or being sent ahead of it and the socket can take it now
        self._direct = direct
        self._buffer: deque[bytes] | None = None
        self._buffered = 0
        self._wake: asyncio.Future[None] | None = None
        self._drained: asyncio.Event | None = None  # a flushing close waits on it
        self._writer: asyncio.Task[None] | None = None
        self.on_close: Callable[[], None] | None = None  # told when the server closes

    # --- Member / Sink ------------------------------------------------------------------
    # a write is buffered at once: never left half-done (the engine's Sink)
    pending: None = None

    def write(self, frame: bytes) -> bool:
        return self.send(frame)

    async def settle(self) -> None:
        return None

    def send(self, frame: bytes) -> bool:
        """Buffer one frame for the client; False (and the socket closes with 4008) when
        the buffer is full or the socket is closing."""
        if self.close_code is not None:
            return False
        if self._buffered + len(frame) > self.limit:
            self.close(CLOSE_SLOW, "send buffer full: reconnect and resume by seq")
            return False
        if (
            self._direct is not None
            and self._buffered == 0
            and (self._writer is None or self._wake is not None)  # no send in flight
            and self._direct.write(frame)
        ):
            return True
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = deque()
        buffer.append(frame)
        self._buffered += len(frame)
        wake = self._wake
        if wake is not None:
            if not wake.done():
                wake.set_result(None)
        elif self._writer is None:  # the first frame: an idle socket costs no task
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"ws-writer-{self.user}"
            )
        return True

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Nothing to do until there is something to send: the writer task starts with the
        first frame (an idle socket holds no task)."""

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the socket (once): frames still buffered are dropped, or with ``flush``
        sent first (for at most ``FLUSH_S``: the client may not be reading)."""
        if self.close_code is not None:
            return
        self.close_code = code  # nothing more is buffered from now on
        self._direct = None  # nor written in place
        if self.on_close is not None:
            self.on_close()
        if not flush:
            self._drop_buffer()
        self._closing = asyncio.ensure_future(self._close(code, reason, flush))

    def _drop_buffer(self) -> None:
        if self._buffer is not None:
            self._buffer.clear()
        self._buffered = 0
        if self._writer is not None:
            self._writer.cancel()

    async def _close(self, code: int, reason: str, flush: bool) -> None:
        writer = self._writer
        in_flight = self._wake is None  # the writer took a frame whose send has not ended
        if flush and writer is not None and not writer.done() and (self._buffer or in_flight):
            self._drained = asyncio.Event()  # the writer sets it once the buffer is empty
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), FLUSH_S)
        self._drop_buffer()
        with contextlib.suppress(Exception):
            await self._send_message({"type": "websocket.close", "code": code, "reason": reason})

    async def stop(self, close_wait_s: float = FLUSH_S + 1.0) -> None:
        """The socket is done: let a close under way go out (its flush included) for up to
        ``close_wait_s`` (a client that stopped reading may read again and get it), then
        stop writing."""
        closing = self._closing
        if closing is not None and not closing.done():
            with contextlib.suppress(Exception):  # a timeout, or the close failed
                # shielded: on timeout the close goes on, this only stops waiting
                await asyncio.wait_for(asyncio.shield(closing), close_wait_s)
        self._direct = None
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = self._buffer
        assert buffer is not None  # started by the first frame buffered
        send = self._send_message
        try:
            while True:
                if not buffer:
                    if self._drained is not None:
                        self._drained.set()
                    self._wake = loop.create_future()
                    await self._wake
                    self._wake = None
                    continue
                frame = buffer.popleft()
                self._buffered -= len(frame)
                await send({"type": "websocket.send", "text": frame.decode()})
        except asyncio.CancelledError:
            raise
        except Exception:  # the client went away mid-send: the receive side sees it too
            log.debug("ws send failed", exc_info=True)
