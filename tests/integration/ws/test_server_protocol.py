"""The lean WebSocket protocol (uvicorn's, with its queue, event and handshake objects made
lighter) on a real uvicorn server, and its queue and flag on their own: frames in order
both ways, a refused handshake, protocol pings answered, closes both ways, a reader that
waits, is woken, or is cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from stream_service.transports.ws.server_protocol import Flag, Inbox, LeanWebSocketProtocol
from tests.support.servers import ThreadServer

seen_headers: list[list[tuple[bytes, bytes]]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    seen_headers.append(list(scope["headers"]))
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
