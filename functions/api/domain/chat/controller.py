"""``POST /api/v1/chat/completions`` (non-streaming; streams live on the stream service)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post

from core.errors import InvalidRequest
from core.http.auth import AuthPrincipal
from core.providers import ModelProvider
from core.schemas.chat import parse_chat_request
from core.settings import Settings


class ChatController(Controller):
    path = "/api/v1/chat/completions"

    @post(status_code=200)
    async def create(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal
    ) -> dict[str, Any]:
        settings: Settings = request.app.state.settings
        chat = parse_chat_request(await request.body(), settings)
        if chat.stream:
            raise InvalidRequest(
                "Streaming is served by the stream service: POST /stream/v1/chat/completions "
                "with stream=true (same request body).",
                param="stream",
                code="use_stream_endpoint",
            )
        provider: ModelProvider = request.app.state.provider
        await provider.require_model(chat.model)
        result = await provider.complete(chat)
        return result.body(chat.model)
