"""SSE responses that no proxy buffers, fed by an engine reader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from litestar.types import Receive, Scope, Send

from stream_service.engine.engine import Opened
from stream_service.engine.reader import Signal
from stream_service.transports.chunk_writer import chunk_writer
from stream_service.transports.outlet import Outlet
from stream_service.transports.sse.formats import PING, SseFormat, retry_frame

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


async def sse_body(opened: Opened, retry_ms: int) -> AsyncIterator[bytes]:
    """Render a reader's events: frames once per format, pings, and the way each format is
    told to reconnect (a ``retry:`` hint and a clean end, or a broken stream)."""
    fmt = opened.format
    hints = isinstance(fmt, SseFormat) and fmt.retry_hints
    try:
        if hints:
            yield retry_frame(retry_ms)
        async for item in opened.items:
            if item.__class__ is list:
                yield fmt.frames(item)
            elif item is Signal.PING:
                yield PING
            else:  # Signal.RECONNECT
                if not hints:
                    raise AbortStream
                yield retry_frame(retry_ms)
                return
    finally:
        await opened.close()


class EventStream:
    """An SSE response as a bare ASGI app (handlers return it annotated ``ASGIApp``).

    Per connection it costs one small task that waits for the client to leave, and per
    event one ``send``: no task group or cancel scope per response. When the client
    disconnects, the sending task is cancelled, so the body generator's ``finally`` runs
    at once (a stream with no readers can then be cancelled upstream after its grace).
    """

    __slots__ = ("body", "headers", "opened", "outlet")

    def __init__(
        self,
        opened: Opened,
        retry_ms: int,
        headers: dict[str, str] | None = None,
        outlet: Outlet | None = None,
    ) -> None:
        self.opened = opened
        self.body = sse_body(opened, retry_ms)
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
            writer = chunk_writer(scope)  # the socket itself, when it can take a chunk now
            if self.outlet is not None:
                self.outlet.attach(send, writer)
            async for chunk in self.body:
                if writer is None or not writer.write(chunk):
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
            await self.opened.close()  # also when the body never started
