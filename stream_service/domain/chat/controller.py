"""``POST /stream/v1/chat/completions``: OpenAI chunk-format SSE, resumable by ``X-Stream-Id``;
``stream: false`` answers a plain completion, within the same per-user limit."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, post
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from core.http.auth import provide_principal
from core.schemas.chat import parse_chat_request
from stream_service.domain.dependencies import Streams
from stream_service.engine.grace import HEADER as GRACE_HEADER
from stream_service.engine.types import StopReason
from stream_service.transports.outlet import Outlet
from stream_service.transports.sse import EventStream
from stream_service.transports.sse.formats import openai_chunks

_json = msgspec.json.Encoder()


class StreamChatController(Controller):
    path = "/stream/v1/chat/completions"

    @post(status_code=200)
    async def create(self, request: Request[Any, Any, Any], streams: Streams) -> ASGIApp:
        # one dependency, the caller in the body: a task group less per start (StreamServices)
        accepted = time.perf_counter()
        principal = await provide_principal(request)
        chat = parse_chat_request(await request.body(), streams.settings)
        engine = streams.engine
        if not chat.stream:  # a plain completion, for clients that share one base URL
            result = await engine.complete(principal.sub, chat)
            return ASGIResponse(
                body=_json.encode(result.body(chat.model)), media_type=MediaType.JSON
            )
        grace = request.headers.get(GRACE_HEADER)
        stream = await engine.create(principal.sub, chat, accepted, grace_header=grace)
        outlet = Outlet()
        try:
            opened = await engine.open(principal.sub, stream.id, 0, openai_chunks, sink=outlet)
        except BaseException:
            await engine.stop_anywhere(stream.id, StopReason.CLIENT)  # nobody will ever read it
            raise
        headers = {"X-Stream-Id": stream.id}
        return EventStream(opened, streams.config.retry_ms, headers, outlet)
