"""Writing to an ASGI response or socket from outside its task (the engine's :class:`Sink`).

The stream's producer writes each new token straight to the clients that are waiting for
it, instead of waking each client's task to do it: a task switch and a turn of the event
loop less per token and client.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from litestar.types import Message, Send

from stream_service.transports.chunk_writer import ChunkWriter


class Outlet:
    """Writes a chunk on a response (or socket) from outside the task that owns it.

    ``write`` runs the server's ``send`` in place. A
    send that finishes without waiting (the usual case) is done; one that has to wait (the
    client reads slowly and the server paused writing) is left ``pending``, and the
    response's task finishes it (``settle``) before it sends anything else, so chunks keep
    their order and a slow client still holds back only itself.

    This relies on what the send path does, which this service controls: uvicorn's send
    either writes at once or first waits for the transport to drain and then writes, and
    Litestar's wrapper only passes it on. A send hook that waits after writing, or that
    binds to the current task (a timeout, a cancel scope), would break it.
    """

    __slots__ = ("_message", "_send", "_writer", "pending")

    def __init__(self, message: Callable[[bytes], Message] | None = None) -> None:
        self._send: Send | None = None
        self._writer: ChunkWriter | None = None
        self.pending: _StartedSend | None = None
        # builds the ASGI message for a chunk (None: an SSE body chunk, built inline)
        self._message = message

    def attach(self, send: Send, writer: ChunkWriter | None = None) -> None:
        """The response has started: writes may go out on ``send`` from now on (or, for a
        response body, through the server's ``writer`` when it can take them at once)."""
        self._send = send
        self._writer = writer

    def write(self, chunk: bytes) -> bool:
        """Send ``chunk`` now; False if it cannot go out this way (nothing was sent)."""
        if self._send is None or self.pending is not None:
            return False
        writer = self._writer
        if writer is not None and writer.write(chunk):
            return True
        message = self._message
        sending = self._send(
            {"type": "http.response.body", "body": chunk, "more_body": True}
            if message is None
            else message(chunk)
        ).__await__()
        try:
            waiting = sending.send(None)
        except StopIteration:
            return True
        except Exception:  # raised before writing: the response's task meets it on its own send
            return False
        self.pending = _StartedSend(sending, waiting)
        return True

    async def settle(self) -> None:
        """Finish a send that ``write`` had to leave waiting."""
        if self.pending is not None:
            try:
                await self.pending
            finally:
                self.pending = None

    def close(self) -> None:
        """The response is over: no more writes; a send still waiting is dropped."""
        self._send = None
        self._writer = None
        if self.pending is not None:
            self.pending.close()
            self.pending = None


class _StartedSend:
    """A send that ``Outlet.write`` started in one task and another task finishes: awaiting
    it passes what the send waits on straight to the awaiting task, and that task's wake-ups
    and cancellation back to the send, as if the task had run it from the start."""

    __slots__ = ("_sending", "_waiting")

    def __init__(self, sending: Generator[Any, Any, None], waiting: Any) -> None:
        self._sending = sending
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, None]:
        sending, waiting = self._sending, self._waiting
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:  # cancelled (the client left): the send sees it
                try:
                    waiting = sending.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = sending.send(sent)
                except StopIteration:
                    return

    def close(self) -> None:
        self._sending.close()
