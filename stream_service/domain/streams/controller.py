"""``/stream/v1/streams``: create a stream, read its events (SSE), status, cancel."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.types import ASGIApp

from core.errors import InvalidRequest
from core.http.auth import AuthPrincipal, provide_principal, stream_reader
from core.schemas.chat import parse_chat_request
from stream_service.domain.dependencies import Engine, Streams, Tokens
from stream_service.engine.grace import HEADER as GRACE_HEADER
from stream_service.transports.outlet import Outlet
from stream_service.transports.sse import EventStream, last_event_id
from stream_service.transports.sse.formats import native, openai_chunks


class StreamsController(Controller):
    """Create and read take one dependency each (``streams``) and the caller in their body:
    they are the two requests of every stream's start (see StreamServices)."""

    path = "/stream/v1/streams"

    @post(status_code=201)
    async def create(self, request: Request[Any, Any, Any], streams: Streams) -> dict[str, Any]:
        accepted = time.perf_counter()
        principal = await provide_principal(request)
        chat = parse_chat_request(await request.body(), streams.settings)
        grace = request.headers.get(GRACE_HEADER)
        stream = await streams.engine.create(principal.sub, chat, accepted, grace_header=grace)
        return {
            "id": stream.id,
            "events_url": streams.url_tokens.stream_events_url(principal.sub, stream.id),
            "status": "running",
        }

    @get("/{stream_id:str}/events")
    async def events(
        self, request: Request[Any, Any, Any], stream_id: FromPath[str], streams: Streams
    ) -> ASGIApp:
        # a read-only URL token for this stream (browsers' EventSource), or a bearer token
        principal = await stream_reader(request, stream_id, streams.url_tokens)
        after = last_event_id(request, streams.config.max_seq)
        fmt = request.query_params.get("format", "sse")
        if fmt not in ("sse", "openai"):
            raise InvalidRequest("'format' must be 'sse' or 'openai'.", param="format")
        # A reader on another node in a stream's first moments waits for its record
        # (RECORD_WAIT_S, the engine decides; unknown and foreign ids do not wait).
        outlet = Outlet()
        opened = await streams.engine.open(
            principal.sub, stream_id, after, openai_chunks if fmt == "openai" else native, outlet
        )
        return EventStream(opened, streams.config.retry_ms, {"X-Stream-Id": stream_id}, outlet)

    @get("/{stream_id:str}")
    async def status(
        self,
        principal: AuthPrincipal,
        stream_id: FromPath[str],
        engine: Engine,
        url_tokens: Tokens,
    ) -> dict[str, Any]:
        described = await engine.describe(principal.sub, stream_id)
        # A fresh URL token, so a client can resume after the one it had expired.
        return {**described, "events_url": url_tokens.stream_events_url(principal.sub, stream_id)}

    @post("/{stream_id:str}/cancel", status_code=200)
    async def cancel(
        self, principal: AuthPrincipal, stream_id: FromPath[str], engine: Engine
    ) -> dict[str, Any]:
        """Bearer only: a URL token (it may sit in a log) reads, never cancels."""
        return await engine.cancel(principal.sub, stream_id)
