"""The floor under any asyncio relay: bytes from the upstream to the client, nothing else.

``make bench BENCH_ARGS="--floor"`` runs each level through this process too, on the node's
core, with the same load generator: each client's ``POST /stream/v1/chat/completions`` is
passed to the scripted upstream as ``POST /v1/chat/completions`` and the upstream's response
bytes go back to the client as they arrive (one ``read`` and one ``write`` system call per
token, on uvloop; no HTTP parsing past the request head, no JSON, no store, no auth). Its CPU
per token is what the event loop and the kernel's loopback TCP cost for one token in, one
token out: no relay written on asyncio can cost less, so the node's CPU per token minus this
is what the service's own code costs.
"""

from __future__ import annotations

import argparse
import asyncio

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


class _Client(asyncio.Protocol):
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
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
            b"Content-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % length
        ) + body[:length]
        self.opening = asyncio.ensure_future(self._open(request))

    async def _open(self, request: bytes) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            upstream, _ = await loop.create_connection(
                lambda: _Upstream(self.transport),  # type: ignore[arg-type]
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


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Client(upstream_port), "127.0.0.1", port, backlog=8192
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    uvloop.run(serve(args.port, args.upstream_port))


if __name__ == "__main__":
    main()
