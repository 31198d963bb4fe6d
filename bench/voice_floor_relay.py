"""The floor under any voice relay: WebSocket messages passed on as they are, nothing else.

``make bench-voice`` runs the relay level through this process too, on the node's core: each
client's socket is joined to a socket of its own to the scripted realtime upstream, and every
message goes across unread (``websockets`` on uvloop, no JSON, no auth, no session state).
Its added latency per audio frame is the hop itself (one more WebSocket on loopback each way
and the event loop's turn to pass a frame on); the node's added latency minus this is what
the relay's own code costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvloop
import websockets
from websockets.asyncio.server import ServerConnection, serve

from bench import raise_fd_limit


async def _pipe(source: websockets.asyncio.connection.Connection, sink: object) -> None:
    async for message in source:
        await sink.send(message)  # type: ignore[attr-defined]


async def _relay(client: ServerConnection, upstream_url: str) -> None:
    query = client.request.path.partition("?")[2] if client.request is not None else ""
    url = upstream_url + ("?" + query if query else "")
    with contextlib.suppress(OSError, websockets.WebSocketException):
        async with websockets.connect(url, max_size=None, compression=None) as upstream:
            down = asyncio.ensure_future(_pipe(upstream, client))
            up = asyncio.ensure_future(_pipe(client, upstream))
            try:
                await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (down, up):
                    task.cancel()
                await asyncio.gather(down, up, return_exceptions=True)


async def main_async(port: int, upstream_url: str) -> None:
    async with serve(
        lambda client: _relay(client, upstream_url),
        "127.0.0.1",
        port,
        max_size=None,
        compression=None,
    ) as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="ws://host:port/v1/realtime")
    args = parser.parse_args()
    raise_fd_limit()
    uvloop.run(main_async(args.port, args.upstream))


if __name__ == "__main__":
    main()
