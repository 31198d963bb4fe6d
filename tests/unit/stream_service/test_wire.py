"""SSE chunks written straight to the connection (``transports/wire.py``) on a real uvicorn:
the client reads the same chunked body as through ``send``, in order, and a connection whose
buffers are full still holds the writes back (they wait in ``send`` as before)."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import httpx

from stream_service.transports.outlet import Outlet
from stream_service.transports.wire import Wire, WireHttpProtocol
from tests.support.servers import ThreadServer

CHUNK = 64 * 1024


class _App:
    """Starts a response, then writes through an Outlet as the producer does, counting the
    ASGI body sends that happen."""

    def __init__(self, chunks: int | None) -> None:
        self.chunks = chunks  # None: write until the outlet has to wait
        self.body_sends = 0
        self.written = 0
        self.waited = asyncio.Event()  # set from the server's loop; read after the response

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        async def counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                self.body_sends += 1
            await send(message)

        await counting(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x")]}
        )
        outlet = Outlet()
        outlet.attach(counting, scope)
        if self.chunks is not None:
            for i in range(self.chunks):
                assert outlet.write(b"line %d\n" % i)
        else:
            while outlet.pending is None and self.written < 4000:
                assert outlet.write(b"%08d" % self.written + b"x" * (CHUNK - 8))
                self.written += 1
            if outlet.pending is not None:
                self.waited.set()
            await outlet.settle()
        outlet.close()
        await counting({"type": "http.response.body", "body": b"", "more_body": False})


def test_chunks_go_straight_to_the_connection_and_read_as_one_body() -> None:
    app = _App(chunks=200)
    with ThreadServer(app, http=WireHttpProtocol) as server:
        response = httpx.get(server.url, timeout=10)
    assert response.status_code == 200
    assert response.text == "".join(f"line {i}\n" for i in range(200))
    assert app.body_sends == 1  # only the final empty body went through send


def test_a_full_connection_holds_the_writes_back_in_order() -> None:
    app = _App(chunks=None)
    with ThreadServer(app, http=WireHttpProtocol) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            # the app writes without yielding: the buffers fill until the outlet must wait
            received = bytearray()
            while chunk := sock.recv(1 << 20):
                received += chunk
    assert app.waited.is_set() and app.written < 4000
    assert app.body_sends >= 2  # the write that had to wait went through send
    head, _, chunked = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    decoded = _dechunk(chunked)
    # every chunk arrived once, in order, including the one that waited
    assert len(decoded) == app.written * CHUNK
    assert [int(decoded[i : i + 8]) for i in range(0, len(decoded), CHUNK)] == list(
        range(app.written)
    )


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return bytes(out)
        out += data[:size]
        data = data[size + 2 :]


def test_the_connection_calls_a_response_back_when_its_client_leaves() -> None:
    """An SSE response learns of the disconnect from the connection, not from a task of its
    own waiting on ``receive``."""
    lost = threading.Event()
    registered: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        gone = asyncio.get_running_loop().create_future()
        registered.append(Wire.on_lost(scope, lambda: gone.set_result(None)))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi", "more_body": True})
        await asyncio.wait_for(gone, 30)
        lost.set()

    with ThreadServer(app, http=WireHttpProtocol) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        seen = b""
        while b"hi" not in seen:
            seen += sock.recv(65536)
        sock.close()
        assert lost.wait(30)
    assert registered == [True]
