"""``POST /api/v1/chat/completions`` (non-streaming; streams live on the stream service)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Request, post

from core.errors import STREAM_ENDPOINT, CompletionTimedOut, InvalidRequest
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
                f"Streaming is served by the stream service: POST {STREAM_ENDPOINT} "
                "with stream=true (same request body).",
                param="stream",
                code="use_stream_endpoint",
            )
        provider: ModelProvider = request.app.state.provider
        budget = settings.completion_timeout_s
        deadline = asyncio.timeout(budget)  # the whole call, upstream retries included
        try:
            async with deadline:
                await provider.check(chat)
                result = await provider.complete(chat)
        except TimeoutError as exc:
            if budget is None or not deadline.expired():
                raise
            raise CompletionTimedOut(budget) from exc
        return result.body(chat.model)
