"""The floor under any asyncio relay: bytes from the upstream to the client, nothing else.

``make bench BENCH_ARGS="--floor"`` runs each level through this process too, on the node's
core, with the same load generator: each client's ``POST /stream/v1/chat/completions`` is
passed to the scripted upstream as ``POST /v1/chat/completions`` and the upstream's response
bytes go back to the client as they arrive (one ``read`` and one ``write`` system call per
token, on uvloop; no HTTP parsing past the request head, no JSON, no store, no auth). Its CPU
per token is what the event loop and the kernel's loopback TCP cost for one token in, one
token out: no relay written on asyncio can cost less, so the node's CPU per token minus this
is what the service's own code costs.

``--parse`` (``make bench`` runs it too, as the ``parse`` rows): the least a relay that
understands the stream can cost. The upstream's HTTP response is parsed (httptools), its SSE
lines split and each chunk's JSON decoded (msgspec), and each token written to the client
as this service's ``delta`` event, from the upstream socket's callback (a push path: no
task, future or generator per token) straight to the client's transport. No store, resume
buffer, auth, metrics or ASGI.
"""

from __future__ import annotations

import argparse
import asyncio

import httptools
import msgspec
import uvloop

from bench import raise_fd_limit

_HEAD_END = b"\r\n\r\n"


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta = msgspec.field(default_factory=_Delta)


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] = msgspec.field(default_factory=list)


class _Text(msgspec.Struct, gc=False):
    text: str


_decode = msgspec.json.Decoder(_Chunk).decode
_encode = msgspec.json.Encoder().encode
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class _ParsingUpstream(asyncio.Protocol):
    """``--parse``: what a relay that understands the stream cannot do without, and nothing
    else: the upstream's HTTP response parsed (httptools, chunked framing), its SSE lines
    split and each chunk's JSON decoded (msgspec), the text re-encoded as this service's
    ``delta`` event with its ``id:`` and written as one chunk of a chunked response. No
    store, no buffer for resumes, no auth, no metrics, no ASGI: a push path straight from
    the upstream socket's callback to the client's transport."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.buffer = b""
        self.seq = 0
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.client.write(_SSE_HEAD)

    def on_body(self, body: bytes) -> None:
        lines = (self.buffer + body).split(b"\n") if self.buffer else body.split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            chunk = _decode(data)
            if chunk.choices and chunk.choices[0].delta.content:
                self.seq += 1
                frame = b"id: %d\nevent: delta\ndata: %s\n\n" % (
                    self.seq,
                    _encode(_Text(chunk.choices[0].delta.content)),
                )
                self.client.write(b"%x\r\n%s\r\n" % (len(frame), frame))

    def on_message_complete(self) -> None:
        done = b"event: done\ndata: {}\n\n"
        self.client.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        self.client.close()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    def __init__(self, upstream_port: int, parse: bool = False) -> None:
        self.upstream_port = upstream_port
        self.upstream_protocol = _ParsingUpstream if parse else _Upstream
        # parsed: the upstream frames its reply in chunks (keep-alive); else it is relayed
        # to its end with the connection
        self.connection = b"keep-alive" if parse else b"close"
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.BaseTransport | None = None
        self.opening: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        if self.opening is not None or self.transport is None:
            return
        self.buffer += data
        end = self.buffer.find(_HEAD_END)
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        if head[0].startswith("GET "):  # a health check: the relay is up
            self.transport.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            self.transport.close()
            return
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = self.buffer[end + 4 :]
        if len(body) < length:
            return
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nConnection: %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (self.connection, length)
        ) + body[:length]
        self.opening = asyncio.ensure_future(self._open(request))

    async def _open(self, request: bytes) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: self.upstream_protocol(self.transport),  # type: ignore[arg-type]
                "127.0.0.1",
                self.upstream_port,
            )
        except OSError:
            self.transport.close()
            return
        self.upstream = upstream
        upstream.write(request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(port: int, upstream_port: int, parse: bool = False) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(upstream_port, parse), "127.0.0.1", port, backlog=8192
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument(
        "--parse", action="store_true", help="parse and re-render each token (see _ParsingUpstream)"
    )
    args = parser.parse_args()
    raise_fd_limit()
    uvloop.run(serve(args.port, args.upstream_port, args.parse))


if __name__ == "__main__":
    main()
