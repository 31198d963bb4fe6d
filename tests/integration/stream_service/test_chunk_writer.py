"""The chunk writer (uvicorn's httptools protocol with ``rtai.chunk_writer``) on a real
uvicorn server: chunks written straight to the socket arrive framed as uvicorn frames them,
in order with those sent through ASGI; a paused transport, a finished or unchunked response
make it refuse (the ASGI path then waits), and each request on a keep-alive connection
writes to its own response."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from stream_service.transports.chunk_writer import ChunkWriterProtocol, chunk_writer
from tests.support.servers import ThreadServer

Scope = dict[str, Any]

outcomes: list[tuple[str, bool]] = []


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    writer = chunk_writer(scope)
    path = scope["path"]
    outcomes.append(("has_writer", writer is not None))
    assert writer is not None
    outcomes.append(("before_start", writer.write(b"too early")))
    if path == "/sized":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        outcomes.append(("sized", writer.write(b"no")))
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if path == "/flood":
        # write until the socket's buffer is full and uvicorn pauses writing, then on
        # through ASGI (it waits for the client): nothing lost, nothing reordered
        direct = refused = 0
        for i in range(4000):
            chunk = b"%06d" % i + b"x" * 1018
            if writer.write(chunk):
                direct += 1
            else:
                refused += 1
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        outcomes.append(("flood_direct", direct > 0))
        outcomes.append(("flood_refused", refused > 0))
    else:
        for i, part in enumerate([b"a", b"b", b"c", b"d"]):
            if i % 2:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            else:
                outcomes.append(("wrote", writer.write(part)))
        outcomes.append(("empty", writer.write(b"")))
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    outcomes.append(("after_end", writer.write(b"late")))


@pytest.fixture(scope="module")
def server() -> Any:
    with ThreadServer(app, http=ChunkWriterProtocol, loop="uvloop") as srv:
        yield srv


def test_direct_chunks_arrive_framed_and_in_order_with_asgi_ones(server: ThreadServer) -> None:
    outcomes.clear()
    response = httpx.get(server.url + "/mixed")
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == b"abcd"
    assert dict(outcomes) == {
        "has_writer": True,
        "before_start": False,
        "wrote": True,
        "empty": False,
        "after_end": False,
    }


def test_a_sized_response_is_left_to_asgi(server: ThreadServer) -> None:
    outcomes.clear()
    response = httpx.get(server.url + "/sized")
    assert response.content == b"ok"
    assert ("sized", False) in outcomes


def test_a_paused_transport_refuses_and_nothing_is_lost(server: ThreadServer) -> None:
    outcomes.clear()

    async def slow_read() -> bytes:
        async with (
            httpx.AsyncClient() as client,
            client.stream("GET", server.url + "/flood") as response,
        ):
            await asyncio.sleep(0.5)  # let the server fill the socket and pause
            return b"".join([part async for part in response.aiter_raw()])

    body = asyncio.run(slow_read())
    chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)]
    assert [int(c[:6]) for c in chunks] == list(range(4000))
    assert ("flood_direct", True) in outcomes and ("flood_refused", True) in outcomes


def test_each_request_on_a_kept_alive_connection_writes_to_its_own(server: ThreadServer) -> None:
    outcomes.clear()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while data.count(b"0\r\n\r\n") < 2:
            data += sock.recv(65536)
    first, second = data.split(b"HTTP/1.1 200")[1:]
    assert b"\r\n1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n0\r\n\r\n" in first
    assert b"\r\n1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n0\r\n\r\n" in second
