"""Writing a chunk of a streamed HTTP response straight to its socket (an ASGI extension).

Per token, the ASGI path is: a message dict, Litestar's send wrapper, uvicorn's ``send``
coroutine (flow control, state checks, chunked framing), then the transport's ``write``:
about a tenth of the node's CPU per relayed token. :class:`ChunkWriterProtocol` (uvicorn's
httptools protocol, which the node runs) adds ``scope["extensions"]["rtai.chunk_writer"]``
to each HTTP request: a :class:`ChunkWriter` that frames a chunk as uvicorn would and
writes it to the transport at once, when nothing stands in the way: the response has
started, is chunked, is not finished, the client is connected and writing is not paused.
Otherwise it writes nothing and says so, and the caller takes the ASGI path (which waits
for a paused transport), so order and flow control are uvicorn's own.

It reads uvicorn's per-request state (``RequestResponseCycle``), pinned in the lock file
and checked by ``tests/integration/stream_service/test_chunk_writer.py``; any other server
simply has no such extension.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

EXTENSION = "rtai.chunk_writer"


class ChunkWriter:
    """``write(chunk)``: one chunk of a started, chunked response, now; False if it cannot
    go out this way (nothing was written)."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    def write(self, chunk: bytes) -> bool:
        cycle = self._cycle
        if (
            not chunk
            or cycle.flow.write_paused
            or cycle.disconnected
            or not cycle.response_started
            or cycle.response_complete
            or not cycle.chunked_encoding
        ):
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        return True


class ChunkWriterProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, each request's scope with a :class:`ChunkWriter`."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        # an upgrade (WebSocket) makes no cycle for this request: the last one is another's
        if cycle is not None and cycle.scope is self.scope:
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            scope.setdefault("extensions", {})[EXTENSION] = ChunkWriter(cycle)


def chunk_writer(scope: Any) -> ChunkWriter | None:
    """The request's :class:`ChunkWriter`, if its server gave one."""
    extensions = scope.get("extensions")
    return extensions.get(EXTENSION) if extensions else None
