"""``POST /stream/v1/chat/completions``: OpenAI chunk-format SSE, resumable by ``X-Stream-Id``."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, post
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from core.http.auth import AuthPrincipal
from core.providers import ModelProvider
from core.schemas.chat import parse_chat_request
from core.settings import Settings
from stream_service.engine.engine import StreamEngine
from stream_service.sse import EventStream, Outlet

_json = msgspec.json.Encoder()


class StreamChatController(Controller):
    path = "/stream/v1/chat/completions"

    @post(status_code=200)
    async def create(self, request: Request[Any, Any, Any], principal: AuthPrincipal) -> ASGIApp:
        accepted = time.perf_counter()
        settings: Settings = request.app.state.settings
        chat = parse_chat_request(await request.body(), settings)
        engine: StreamEngine = request.app.state.engine
        if not chat.stream:  # a plain completion, for clients that share one base URL
            provider: ModelProvider = engine.provider
            await provider.require_model(chat.model)
            result = await provider.complete(chat)
            return ASGIResponse(
                body=_json.encode(result.body(chat.model)), media_type=MediaType.JSON
            )
        stream = await engine.create(principal.sub, chat, accepted)
        outlet = Outlet()
        try:
            events = await engine.open(
                principal.sub, stream.id, 0, openai_format=True, outlet=outlet
            )
        except BaseException:
            await engine.cancel_any(stream.id, "client")  # nobody will ever read it
            raise
        return EventStream(events, {"X-Stream-Id": stream.id}, outlet)
