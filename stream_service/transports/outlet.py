"""SSE responses that no proxy buffers, and the request bits that resume them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from typing import Any

from litestar import Request
from litestar.types import Receive, Scope, Send

from core.errors import InvalidRequest

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: don't buffer this response
    "Content-Encoding": "identity",
}


_BASE_HEADERS = [
    (k.lower().encode(), v.encode())
    for k, v in {"content-type": "text/event-stream; charset=utf-8", **SSE_HEADERS}.items()
]


class AbortStream(Exception):
    """Raised by a body to break the connection instead of ending the response: a client
    that would read a clean end as "complete" (the openai SDK) must see an error."""


class Outlet:
    """Writes a chunk on an SSE response from outside the response's task.

    The stream's producer writes each new token straight to the clients that are waiting
    for it, instead of waking each client's task to do it: a task switch and a turn of the
    event loop less per token and client. ``write`` runs the server's ``send`` in place. A
    send that finishes without waiting (the usual case) is done; one that has to wait (the
    client reads slowly and the server paused writing) is left ``pending``, and the
    response's task finishes it (``settle``) before it sends anything else, so chunks keep
    their order and a slow client still holds back only itself.

    This relies on what the send path does, which this service controls: uvicorn's send
    either writes at once or first waits for the transport to drain and then writes, and
    Litestar's wrapper only passes it on. A send hook that waits after writing, or that
    binds to the current task (a timeout, a cancel scope), would break it.
    """

    __slots__ = ("_send", "pending")

    def __init__(self) -> None:
        self._send: Send | None = None
        self.pending: _StartedSend | None = None

    def write(self, chunk: bytes) -> bool:
        """Send ``chunk`` now; False if it cannot go out this way (nothing was sent)."""
        if self._send is None or self.pending is not None:
            return False
        message = {"type": "http.response.body", "body": chunk, "more_body": True}
        sending = self._send(message).__await__()  # type: ignore[arg-type]
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


class EventStream:
    """An SSE response as a bare ASGI app (handlers return it annotated ``ASGIApp``).

    Per connection it costs one small task that waits for the client to leave, and per
    event one ``send``: no task group or cancel scope per response. When the client
    disconnects, the sending task is cancelled, so the body generator's ``finally`` runs
    at once (a stream with no readers can then be cancelled upstream after its grace).
    """

    __slots__ = ("body", "headers", "outlet")

    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: dict[str, str] | None = None,
        outlet: Outlet | None = None,
    ) -> None:
        self.body = body
        self.outlet = outlet
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.headers = _BASE_HEADERS + extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sender = asyncio.current_task()
        assert sender is not None
        sending = True

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if sending:
                sender.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            if self.outlet is not None:
                self.outlet._send = send
            async for chunk in self.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sending = False
            if self.outlet is not None:
                await self.outlet.settle()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except AbortStream:
            return  # no final empty body: the server closes an unfinished response
        except asyncio.CancelledError:
            if not watcher.done():
                raise  # cancelled for another reason (shutdown): let it through
            sender.uncancel()  # the client left: a normal end of this response
        finally:
            sending = False
            if self.outlet is not None:
                self.outlet.close()
            watcher.cancel()
            with contextlib.suppress(Exception):
                await self.body.aclose()  # type: ignore[attr-defined]


def last_event_id(request: Request[Any, Any, Any], max_seq: int) -> int:
    """``Last-Event-ID`` header, else ``last_event_id`` query parameter; 0 when absent."""
    raw = request.headers.get("last-event-id")
    if raw is None:
        raw = request.query_params.get("last_event_id")
    if raw is None or raw.strip() == "":
        return 0
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) > max_seq:
        raise InvalidRequest(
            f"Last-Event-ID must be a non-negative integer event id; got {value[:40]!r}.",
            code="invalid_last_event_id",
            param="Last-Event-ID",
        )
    return int(value)
