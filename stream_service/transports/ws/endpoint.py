"""The socket's life: authenticate before the upgrade, then read frames until it closes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from litestar import WebSocket

from core.auth import Principal, TokenVerifier, UrlTokens
from core.errors import ApiError
from core.http.auth import verify_bearer
from core.settings import Settings
from stream_service.engine.engine import StreamEngine
from stream_service.rooms.service import RoomService
from stream_service.transports.ws.config import WsSettings
from stream_service.transports.ws.connection import (
    CLOSE_INTERNAL,
    CLOSE_UNAUTHORIZED,
    FLUSH_S,
    WsConnection,
)
from stream_service.transports.ws.hub import WsHub
from stream_service.transports.ws.room_replies import RoomReplies
from stream_service.transports.ws.server_protocol import frame_writer
from stream_service.transports.ws.session import WsSession

log = logging.getLogger("rtai.ws")
TICKET_SCOPE = "ws"


def authorization(scope: Any) -> str | None:
    """The ``Authorization`` header, read from the scope: not through ``socket.headers``,
    whose parsed copy the connection would keep for its whole life (~1.7 KB a socket)."""
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":  # uvicorn passes the client's spelling
            return str(value.decode("latin-1"))
    return None


async def authenticate(
    socket: WebSocket[Any, Any, Any], verifier: TokenVerifier, tickets: UrlTokens
) -> Principal | None:
    """``Authorization: Bearer`` (non-browser clients) or ``?ticket=`` (browsers)."""
    header = authorization(socket.scope)
    try:
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            return await verify_bearer(verifier, token.strip())
        ticket = socket.query_params.get("ticket")
        if ticket:
            return tickets.verify(ticket, TICKET_SCOPE)
    except ApiError:
        return None
    return None


async def serve(
    socket: WebSocket[Any, Any, Any],
    *,
    engine: StreamEngine,
    settings: Settings,
    ws: WsSettings,
    verifier: TokenVerifier,
    tickets: UrlTokens,
    rooms: RoomService | None,
    replies: RoomReplies | None,
    hub: WsHub,
) -> None:
    principal = await authenticate(socket, verifier, tickets)
    if principal is None:
        # Closed before the upgrade: the client gets HTTP 403 on its handshake.
        await socket.close(code=CLOSE_UNAUTHORIZED, reason="unauthorized")
        return
    await socket.accept()
    conn = WsConnection(
        principal.sub,
        socket.send,  # type: ignore[arg-type]
        ws.send_buffer_bytes,
        frame_writer(socket.scope),
    )
    del principal  # its claims are not held for the socket's life (~1.6 KB a socket)
    session = WsSession(conn, engine, settings, ws, rooms, replies)
    conn.start()
    hub.add(conn)
    engine.metrics.connections.inc()
    receiving = False
    # Frames are read all the time (so the server keeps reading the socket, pongs
    # included, while a slow frame is handled) and handled one at a time, in order, from
    # a short queue; a client that fills it is told to slow down.
    # (The queue and its task exist from the first frame on: an idle socket costs neither.)
    inbox: asyncio.Queue[str | bytes] | None = None

    async def handle_frames(queue: asyncio.Queue[str | bytes]) -> None:
        while True:
            data = await queue.get()
            try:
                await session.handle(data)
            except Exception:  # handle() answers its own failures; this is the last guard
                log.exception("ws frame handler failed; closing with 1011")
                conn.close(CLOSE_INTERNAL, "internal error: reconnect and resume by seq")
                return

    async def read_frames() -> None:
        nonlocal receiving, inbox
        handler: asyncio.Future[None] | None = None
        try:
            while conn.close_code is None:
                receiving = True
                message = await socket.receive()
                receiving = False
                if message["type"] != "websocket.receive":
                    break  # disconnected
                text = message.get("text")
                data = text if text is not None else message.get("bytes") or b""
                if inbox is None:
                    inbox = asyncio.Queue(maxsize=ws.message_burst)
                    handler = asyncio.ensure_future(handle_frames(inbox))
                if inbox.full():
                    session.overloaded()
                else:
                    inbox.put_nowait(data)
        except Exception:  # the client went away mid-frame: nothing more to do
            log.debug("ws receive ended", exc_info=True)
        finally:
            if handler is not None:
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await handler

    reader = asyncio.ensure_future(read_frames())

    def on_close() -> None:
        # The server closes (4008, 1008, 1012): the session ends now, not when the client
        # answers, which one that stopped reading never does (its rooms would keep it
        # present).
        if not reader.done() and receiving:
            reader.cancel()

    conn.on_close = on_close
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    finally:
        if not reader.done():  # this handler was cancelled (the server stops)
            reader.cancel()
        hub.discard(conn)
        engine.metrics.connections.dec()
        await session.close()  # its streams and rooms, at once
        # the close frame, until the server's pings would give up on the client anyway
        await conn.stop(close_wait_s=max(FLUSH_S + 1.0, 2 * settings.keepalive_s))
