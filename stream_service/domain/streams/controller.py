"""``/stream/v1/streams``: create a stream, read its events (SSE), status, cancel."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.types import ASGIApp

from core.auth import Principal, UrlTokens
from core.http.auth import AuthPrincipal, provide_principal
from core.schemas.chat import parse_chat_request
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import StreamEngine
from stream_service.sse import EventStream, Outlet, last_event_id


async def stream_principal(request: Request[Any, Any, Any], stream_id: str) -> Principal:
    """A URL token scoped to this stream (browsers' EventSource), or a bearer token."""
    token = request.query_params.get("token")
    if token:
        urls: UrlTokens = request.app.state.url_tokens
        return urls.verify(token, f"stream:{stream_id}")
    return await provide_principal(request)


def events_url(request: Request[Any, Any, Any], stream_id: str, owner: str) -> str:
    urls: UrlTokens = request.app.state.url_tokens
    return f"/stream/v1/streams/{stream_id}/events?token={urls.mint(owner, f'stream:{stream_id}')}"


class StreamsController(Controller):
    path = "/stream/v1/streams"

    @post(status_code=201)
    async def create(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal
    ) -> dict[str, Any]:
        accepted = time.perf_counter()
        settings: Settings = request.app.state.settings
        chat = parse_chat_request(await request.body(), settings)
        engine: StreamEngine = request.app.state.engine
        stream = await engine.create(principal.sub, chat, accepted)
        return {
            "id": stream.id,
            "events_url": events_url(request, stream.id, principal.sub),
            "status": "running",
        }

    @get("/{stream_id:str}/events")
    async def events(self, request: Request[Any, Any, Any], stream_id: FromPath[str]) -> ASGIApp:
        principal = await stream_principal(request, stream_id)
        config: StreamSettings = request.app.state.stream_config
        after = last_event_id(request, config.max_seq)
        fmt = request.query_params.get("format", "sse")
        if fmt not in ("sse", "openai"):
            from core.errors import InvalidRequest

            raise InvalidRequest("'format' must be 'sse' or 'openai'.", param="format")
        engine: StreamEngine = request.app.state.engine
        # A URL token proves the stream was created: wait a moment for its record if this
        # node is not the producer's and the record is still on its way to the store.
        wait_s = 2.0 if request.query_params.get("token") else 0.5
        outlet = Outlet()
        body = await engine.open(
            principal.sub,
            stream_id,
            after,
            openai_format=fmt == "openai",
            wait_s=wait_s,
            outlet=outlet,
        )
        return EventStream(body, {"X-Stream-Id": stream_id}, outlet)

    @get("/{stream_id:str}")
    async def status(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal, stream_id: FromPath[str]
    ) -> dict[str, Any]:
        engine: StreamEngine = request.app.state.engine
        described = await engine.describe(principal.sub, stream_id)
        # A fresh URL token, so a client can resume after the one it had expired.
        return {**described, "events_url": events_url(request, stream_id, principal.sub)}

    @post("/{stream_id:str}/cancel", status_code=200)
    async def cancel(
        self, request: Request[Any, Any, Any], stream_id: FromPath[str]
    ) -> dict[str, Any]:
        principal = await stream_principal(request, stream_id)
        engine: StreamEngine = request.app.state.engine
        return await engine.cancel(principal.sub, stream_id)
