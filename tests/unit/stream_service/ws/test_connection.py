"""WsConnection: the bounded send buffer, and what a close does with what is buffered."""

from __future__ import annotations

import asyncio
from typing import Any

from stream_service.transports.ws.connection import (
    CLOSE_POLICY,
    CLOSE_SLOW,
    WsConnection,
)


class Socket:
    """The ASGI send side: records messages; ``gate`` cleared = a client not reading."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.gate.wait()
        self.sent.append(message)

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]

    def closes(self) -> list[int]:
        return [m["code"] for m in self.sent if m["type"] == "websocket.close"]


async def test_a_flushing_close_sends_what_is_buffered_first() -> None:
    socket = Socket()
    conn = WsConnection("alice", socket.send, 1024 * 1024)
    conn.start()
    for i in range(100):
        assert conn.send(b'{"n":%d}' % i)
    conn.close(CLOSE_POLICY, "slow down", flush=True)
    assert not conn.send(b'{"late":1}')  # nothing more once closing
    await conn.stop()  # the socket's end waits for the close under way
    assert socket.texts() == [f'{{"n":{i}}}' for i in range(100)]
    assert socket.closes() == [CLOSE_POLICY]


async def test_a_plain_close_drops_what_is_buffered() -> None:
    socket = Socket()
    socket.gate.clear()  # the client reads nothing for now
    conn = WsConnection("alice", socket.send, 1024 * 1024)
    conn.start()
    for i in range(10):
        conn.send(b'{"n":%d}' % i)
    await asyncio.sleep(0)
    conn.close(1012, "restarting")
    socket.gate.set()
    await conn.stop()
    assert len(socket.texts()) <= 1  # at most the frame already being written
    assert socket.closes() == [1012]


async def test_a_flushing_close_waits_for_the_frame_being_sent() -> None:
    socket = Socket()
    socket.gate.clear()  # the transport is paused
    conn = WsConnection("alice", socket.send, 1024 * 1024)
    conn.start()
    assert conn.send(b'{"last":1}')
    await asyncio.sleep(0)  # the writer took it from the buffer; its send waits
    assert conn.buffered_bytes == 0
    conn.close(CLOSE_POLICY, "slow down", flush=True)
    await asyncio.sleep(0.05)
    socket.gate.set()  # the client reads again within FLUSH_S
    await conn.stop()
    assert socket.texts() == ['{"last":1}']  # sent, then the close
    assert socket.closes() == [CLOSE_POLICY]


async def test_a_flushing_close_to_a_client_that_does_not_read_is_bounded() -> None:
    socket = Socket()
    socket.gate.clear()
    conn = WsConnection("alice", socket.send, 1024 * 1024)
    conn.start()
    conn.send(b"{}")
    conn.close(CLOSE_POLICY, "slow down", flush=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await conn.stop()  # gives up on the flush after FLUSH_S, then on the close
    assert loop.time() - started < 3.0


async def test_overflow_closes_with_4008_and_keeps_memory_bounded() -> None:
    socket = Socket()
    socket.gate.clear()
    conn = WsConnection("alice", socket.send, 16 * 1024)
    conn.start()
    frame = b"x" * 1000
    accepted = 0
    while conn.send(frame):
        accepted += 1
        assert conn.buffered_bytes <= 16 * 1024
    assert accepted <= 17  # 16 KiB of 1 KB frames (plus the one being written)
    assert conn.close_code == CLOSE_SLOW
    assert conn.buffered_bytes == 0
    socket.gate.set()
    await conn.stop()
    assert socket.closes() == [CLOSE_SLOW]


class Direct:
    """The server's frame writer: writes into the same record as the socket, in place,
    while ``open`` (a transport that takes writes now)."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.open = True
        self.written = 0

    def write(self, frame: bytes) -> bool:
        if not self.open:
            return False
        self.socket.sent.append({"type": "websocket.send", "text": frame.decode()})
        self.written += 1
        return True


async def test_frames_go_out_in_place_and_never_overtake_a_buffered_one() -> None:
    socket = Socket()
    direct = Direct(socket)
    conn = WsConnection("alice", socket.send, 1024 * 1024, direct)  # type: ignore[arg-type]
    conn.start()
    assert conn.send(b"1") and conn.send(b"2")
    assert direct.written == 2 and conn.buffered_bytes == 0  # no task, no buffer
    direct.open = False  # the transport paused: the next frames wait in the buffer
    socket.gate.clear()  # and the client reads slowly: a send stays in flight
    assert conn.send(b"3")
    await asyncio.sleep(0)  # the writer took "3" from the buffer; its send waits
    assert conn.buffered_bytes == 0
    direct.open = True  # writable again, but "3" is still being sent: "4" must queue
    assert conn.send(b"4") and conn.send(b"5")
    assert direct.written == 2
    socket.gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert conn.send(b"6")  # the buffer emptied and the writer waits: in place again
    assert direct.written == 3
    assert socket.texts() == ["1", "2", "3", "4", "5", "6"]
    await conn.stop()
