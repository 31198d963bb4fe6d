"""The HTTP/1.1 connection under a streamed response, for writing body chunks straight to it.

A streamed token costs one ``transport.write``; going through the ASGI ``send`` for it
(a coroutine, a message dict, the server's checks, the framework's wrapper) cost about as
much again. uvicorn's httptools protocol is extended here to put the request's response
cycle in the scope (``extensions["rtai.wire"]``, a weak reference: the cycle holds the
scope); :class:`Wire` then writes a chunk of a started, chunked response to the socket
itself, with exactly the checks uvicorn's ``send`` makes before writing (the client left,
the connection's write buffer is full), so back-pressure and ordering are unchanged: when
it cannot write at once the caller goes through ``send`` as before, which waits. The
protocol also calls a response back when its client leaves (``Wire.on_lost``), so an SSE
response needs no task of its own waiting on ``receive`` for the disconnect.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

WIRE = "rtai.wire"


class WireHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, naming each request's response cycle in its scope, and
    telling a response that asked (:meth:`Wire.on_lost`) when its client goes away."""

    on_lost: Callable[[], None] | None = None

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade (WebSocket)
            extensions: dict[str, Any] = dict(self.scope.get("extensions") or {})
            extensions[WIRE] = (weakref.ref(cycle), weakref.ref(self))
            self.scope["extensions"] = extensions

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        callback, self.on_lost = self.on_lost, None
        if callback is not None:
            callback()


class Wire:
    """Writes body chunks of one started, chunked HTTP/1.1 response to its connection."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    @staticmethod
    def of(scope: Any) -> Wire | None:
        """The wire under a response that has started, or None (another server, HTTP/2,
        a response with a Content-Length or to HEAD): then only ``send`` writes."""
        refs = (scope.get("extensions") or {}).get(WIRE)
        cycle = refs[0]() if refs is not None else None
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
            or cycle.scope.get("method") == "HEAD"
        ):
            return None
        return Wire(cycle)

    @staticmethod
    def on_lost(scope: Any, callback: Callable[[], None] | None) -> bool:
        """Have ``callback`` run when the client's connection is lost (None: no longer);
        False if this connection cannot tell (then watch ``receive`` for the disconnect).
        It costs the response no task of its own."""
        refs = (scope.get("extensions") or {}).get(WIRE)
        if refs is None:
            return False
        cycle, protocol = refs[0](), refs[1]()
        if cycle is None or protocol is None or protocol.cycle is not cycle:
            return False
        if callback is None:
            protocol.on_lost = None
            return True
        if cycle.disconnected or protocol.transport.is_closing():
            return False
        protocol.on_lost = callback
        return True

    def write(self, chunk: bytes) -> bool:
        """Write ``chunk`` as one HTTP chunk now; False (nothing written) when it cannot go
        out without waiting or the response is over: ``send`` then takes it, as before."""
        if not chunk:
            return True  # an empty chunk would end the response
        cycle = self._cycle
        if cycle.flow.write_paused or cycle.disconnected or cycle.response_complete:
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        return True
