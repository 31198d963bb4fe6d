"""``/stream/v1/ui/chat``: the AI SDK's ``useChat`` talking to the service directly (SPEC
section 10): send (the UI message stream), resume (``GET {chat id}/stream``), stop."""

from __future__ import annotations

import time
from typing import Any, TypeAlias

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp

from core.http.auth import AuthPrincipal
from stream_service.domain.dependencies import StreamConfig
from stream_service.domain.ui_chat.service import UiChat
from stream_service.engine.grace import HEADER as GRACE_HEADER
from stream_service.transports.sse import EventStream
from stream_service.transports.ui import UI_STREAM_HEADERS

UiChats: TypeAlias = NamedDependency[UiChat]


class UiChatController(Controller):
    path = "/stream/v1/ui/chat"

    @post(status_code=200)
    async def send(
        self,
        request: Request[Any, Any, Any],
        principal: AuthPrincipal,
        ui_chat: UiChats,
        stream_config: StreamConfig,
    ) -> ASGIApp:
        accepted = time.perf_counter()
        grace = request.headers.get(GRACE_HEADER)
        started = await ui_chat.start(principal.sub, await request.body(), accepted, grace)
        headers = {**UI_STREAM_HEADERS, "X-Stream-Id": started.stream_id}
        return EventStream(started.opened, stream_config.retry_ms, headers, started.outlet)

    @get("/{chat_id:str}/stream")
    async def resume(
        self,
        principal: AuthPrincipal,
        chat_id: FromPath[str],
        ui_chat: UiChats,
        stream_config: StreamConfig,
    ) -> ASGIApp:
        resumed = await ui_chat.resume(principal.sub, chat_id)
        if resumed is None:  # nothing to resume (another user's chat id has nothing either)
            return ASGIResponse(status_code=204)
        stream_id, opened, outlet = resumed
        headers = {**UI_STREAM_HEADERS, "X-Stream-Id": stream_id}
        return EventStream(opened, stream_config.retry_ms, headers, outlet)

    @post("/{chat_id:str}/stop", status_code=200)
    async def stop(
        self, principal: AuthPrincipal, chat_id: FromPath[str], ui_chat: UiChats
    ) -> dict[str, Any]:
        return await ui_chat.stop(principal.sub, chat_id)
