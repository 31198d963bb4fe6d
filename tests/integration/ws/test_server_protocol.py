"""The lean WebSocket protocol (uvicorn's, with its queue, event and handshake objects made
lighter) on a real uvicorn server, and its queue and flag on their own: frames in order
both ways, a refused handshake, protocol pings answered, closes both ways, a reader that
waits, is woken, or is cancelled; its frame writer: frames of every size in order among
the app's ASGI sends, held back by a client that stops reading, nothing on a closed
socket."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from stream_service.transports.ws.server_protocol import (
    Flag,
    FrameWriter,
    Inbox,
    LeanWebSocketProtocol,
    frame_writer,
    text_frame,
)
from tests.support.servers import ThreadServer

seen_headers: list[list[tuple[bytes, bytes]]] = []
# what the /direct app's frame writer did: written in place, refused (paused), after close
direct_log: dict[str, Any] = {}


async def direct(writer: FrameWriter, receive: Any, send: Any) -> None:
    """Frames through the writer and through the ASGI send, mixed, in one order; then
    frames until the writer refuses (the client stopped reading), the rest by ASGI."""
    direct_log.clear()
    assert not writer.write(b"before accept")  # nothing goes out before the handshake
    await send({"type": "websocket.accept"})
    sizes = [1, 125, 126, 127, 65535, 65536, 70000]  # each of the three length encodings
    for n, size in enumerate(sizes):
        body = (f"{n}:".encode() + b"d" * size)[:size] if size > 3 else str(n).encode()
        if n % 2:
            await send({"type": "websocket.send", "text": body.decode()})
        else:
            assert writer.write(body)
    assert (await receive())["text"] == "stop reading"
    written = refused = 0
    while written < 4096:  # 64 MiB: far past what the kernel's buffers hold
        # 16 KiB that deflate halves at best (random hex, new each time: deflate would
        # find a repeated block in the last 32 KiB)
        if not writer.write(b"f%06d" % written + os.urandom(8192).hex().encode()):
            refused += 1
            break
        written += 1
    direct_log["refused"] = refused
    direct_log["written"] = written  # last: the test waits for it (another thread)
    # what the writer refused goes by the ASGI send, which waits for the client
    await send({"type": "websocket.send", "text": "after pause"})
    message = await receive()
    assert message["type"] == "websocket.disconnect"
    direct_log["after_close"] = writer.write(b"too late")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    seen_headers.append(list(scope["headers"]))
    if scope["path"] == "/direct":
        writer = frame_writer(scope)
        assert writer is not None
        await direct(writer, receive, send)
        return
    if scope["path"] == "/refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    chosen = "rtai" if "rtai" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": chosen})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text == "bye":
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
            return
        # three frames back per frame in: sends that follow each other keep their order
        for i in range(3):
            await send({"type": "websocket.send", "text": f"{text}:{i}"})


@pytest.fixture(scope="module")
def server() -> Any:
    with ThreadServer(
        app, ws=LeanWebSocketProtocol, loop="uvloop", ws_ping_interval=0.2, ws_ping_timeout=5
    ) as srv:
        yield srv


async def test_frames_flow_both_ways_in_order(server: ThreadServer) -> None:
    url = server.url.replace("http", "ws") + "/echo"
    async with connect(
        url, subprotocols=[Subprotocol("rtai")], additional_headers={"X-Trace": "t1"}
    ) as ws:
        assert ws.subprotocol == "rtai"
        for n in range(50):
            await ws.send(f"m{n}")
        got = [await ws.recv() for _ in range(150)]
        assert got == [f"m{n}:{i}" for n in range(50) for i in range(3)]
        # the app saw the handshake's headers (the protocol drops its own copy after)
        assert (b"x-trace", b"t1") in [(k.lower(), v) for k, v in seen_headers[-1]]
        await ws.send("bye")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000


async def test_a_refused_handshake_is_a_403(server: ThreadServer) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(server.url.replace("http", "ws") + "/refuse"):
            pass
    assert refused.value.response.status_code == 403


async def test_protocol_pings_keep_an_idle_socket_open(server: ThreadServer) -> None:
    url = server.url.replace("http", "ws") + "/echo"
    async with connect(url, ping_interval=None) as ws:
        await asyncio.sleep(1.0)  # the server pings every 0.2 s; the client answers
        await ws.send("still")
        assert await ws.recv() == "still:0"
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)


async def test_a_client_close_reaches_the_app(server: ThreadServer) -> None:
    url = server.url.replace("http", "ws") + "/echo"
    for _ in range(20):  # and the server goes on serving new sockets
        async with connect(url) as ws:
            await ws.send("x")
            assert await ws.recv() == "x:0"


class SlowClient:
    """A WebSocket client that reads the socket only when asked (websockets' sans-I/O
    protocol over an asyncio stream): between reads the server meets real backpressure."""

    def __init__(self, url: str, deflate: bool = False) -> None:
        self.uri = parse_uri(url)
        extensions = [ClientPerMessageDeflateFactory()] if deflate else None
        self.protocol = ClientProtocol(self.uri, max_size=None, extensions=extensions)
        self.frames: list[str] = []

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.uri.host, self.uri.port, limit=65536
        )
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.state is not State.OPEN:
            await self._read()

    def _flush(self) -> None:
        self.writer.write(b"".join(self.protocol.data_to_send()))

    async def _read(self) -> None:
        data = await asyncio.wait_for(self.reader.read(1 << 20), 10)
        self.protocol.receive_data(data) if data else self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self.frames.append(event.data.decode())
        self._flush()  # pongs, the close answer

    async def recv(self, count: int) -> list[str]:
        while len(self.frames) < count:
            await self._read()
        got, self.frames = self.frames[:count], self.frames[count:]
        return got

    def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._flush()

    async def close(self) -> None:
        self.protocol.send_close(1000)
        self._flush()
        while self.protocol.state is not State.CLOSED:
            await self._read()
        self.writer.close()


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
async def test_the_frame_writer_keeps_order_and_holds_back_for_a_slow_client(
    server: ThreadServer, deflate: bool
) -> None:
    client = SlowClient(server.url.replace("http", "ws") + "/direct", deflate)
    await client.open()
    assert bool(client.protocol.extensions) is deflate
    sizes = [1, 125, 126, 127, 65535, 65536, 70000]
    expected = [
        (f"{n}:" + "d" * size)[:size] if size > 3 else str(n) for n, size in enumerate(sizes)
    ]
    assert await client.recv(len(sizes)) == expected
    # the client stops reading: the writer must stop writing in place once the transport
    # pauses (what the kernel's buffers and the transport's 64 KiB hold), not go on
    client.send("stop reading")
    for _ in range(200):
        if "written" in direct_log:
            break
        await asyncio.sleep(0.05)
    assert direct_log["refused"] == 1
    assert 0 < direct_log["written"] < 2048  # 16 KiB frames: under 32 MiB in place
    frames = await client.recv(direct_log["written"] + 1)
    assert [f[:7] for f in frames[:-1]] == [f"f{n:06d}" for n in range(direct_log["written"])]
    assert frames[-1] == "after pause"
    await client.close()
    for _ in range(100):
        if "after_close" in direct_log:
            break
        await asyncio.sleep(0.02)
    assert direct_log["after_close"] is False


def test_a_text_frame_is_the_bytes_websockets_would_send() -> None:
    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        for data in (b"x" * size, ("é" * size).encode()[:size]):  # each length's edges
            assert len(data) == size
            assert text_frame(data) == Frame(Opcode.TEXT, data).serialize(mask=False)


async def test_inbox_hands_items_over_in_order_to_a_waiting_reader() -> None:
    inbox = Inbox()
    assert inbox.empty() and inbox.qsize() == 0
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await reader == 1
    assert inbox.qsize() == 1 and await inbox.get() == 2 and inbox.empty()


async def test_inbox_passes_a_wake_up_on_when_the_woken_reader_is_cancelled() -> None:
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    second = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("only")
    first.cancel()  # woken, then cancelled before it ran: the item must not be stranded
    assert await asyncio.wait_for(second, 1) == "only"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_flag_wakes_every_waiter_and_can_be_cleared() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    flag.clear()
    late = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0.01)
    assert not late.done()
    flag.set()
    await asyncio.wait_for(late, 1)
    await flag.wait()  # set: returns at once
