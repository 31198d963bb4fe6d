"""``/stream/v1/ws`` (WebSocket chat and rooms, SPEC section 6) and its browser tickets."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, post, websocket
from litestar.di import NamedDependency

from core.auth import TokenVerifier, UrlTokens
from core.http.auth import AuthPrincipal
from stream_service.domain.dependencies import AppSettings, Engine
from stream_service.domain.rooms import Rooms
from stream_service.transports.ws.config import WsSettings
from stream_service.transports.ws.endpoint import TICKET_SCOPE, serve
from stream_service.transports.ws.hub import WsHub
from stream_service.transports.ws.room_replies import RoomReplies


@post("/stream/v1/ws/tickets", status_code=200)
async def ws_ticket(
    principal: AuthPrincipal, ws_tickets: NamedDependency[UrlTokens]
) -> dict[str, Any]:
    """A short-lived ticket for browsers, which cannot put headers on a WebSocket."""
    ticket = ws_tickets.mint(principal.sub, TICKET_SCOPE)
    return {"url": f"/stream/v1/ws?ticket={ticket}", "expires_in": ws_tickets.ttl_s}


@websocket("/stream/v1/ws")
async def ws_chat(
    socket: WebSocket[Any, Any, Any],
    engine: Engine,
    settings: AppSettings,
    ws_config: NamedDependency[WsSettings],
    verifier: NamedDependency[TokenVerifier],
    ws_tickets: NamedDependency[UrlTokens],
    rooms: Rooms,
    room_replies: NamedDependency[RoomReplies],
    ws_hub: NamedDependency[WsHub],
) -> None:
    await serve(
        socket,
        engine=engine,
        settings=settings,
        ws=ws_config,
        verifier=verifier,
        tickets=ws_tickets,
        rooms=rooms,
        replies=room_replies,
        hub=ws_hub,
    )
