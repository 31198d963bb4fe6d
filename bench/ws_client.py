"""A WebSocket client on raw asyncio sockets, cheap enough for a load generator: the
handshake, masked text frames out (a zero mask: the bytes stay as they are), frames in
(server frames are never masked), pongs for the server's pings."""

from __future__ import annotations

import asyncio
import base64
import os
import struct


class WsClosed(Exception):
    pass


async def connect(
    host: str, port: int, path: str, token: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        writer.close()
        raise WsClosed(head[:60].decode(errors="replace"))
    return reader, writer


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


async def messages(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):  # type: ignore[no-untyped-def]
    """Yield each text message's bytes; answer pings; stop at a close."""
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(n) if n else b""
        opcode = b0 & 0x0F
        if opcode == 0x1:
            yield payload
        elif opcode == 0x9:
            writer.write(frame(payload, 0xA))
        elif opcode == 0x8:
            return
