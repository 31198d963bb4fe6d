"""The AI SDK's chat on the engine: a ``useChat`` request becomes one durable stream (the
same admission, limits, grace, cancel, metrics and store as any other), and the chat id ->
newest reply mapping lets a resume or a stop find it on any node."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from core import json_input
from core.errors import ApiError, InvalidRequest, NotFound
from core.ids import IdFormat, shown
from core.schemas.chat import ChatCompletionRequest, parse_chat_object
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import Opened, StreamEngine
from stream_service.engine.events import Format, StreamInfo
from stream_service.engine.types import StopReason
from stream_service.store.chats_base import ChatReply, ChatStore, now_ms
from stream_service.transports.outlet import Outlet
from stream_service.transports.ui import UiMessageChunks, to_chat_messages

log = logging.getLogger("rtai.stream.ui_chat")

# What useChat's generateId makes (16 alphanumerics), UUIDs, and app ids of that alphabet.
CHAT_ID = IdFormat("chat", re.compile(r"[A-Za-z0-9_:@+=~-][A-Za-z0-9_.:@+=~-]{0,127}"), "id")
MAX_MESSAGE_ID_CHARS = 256
# The transport's own fields: the rest of the body is the chat request (model, tools...).
_UI_FIELDS = ("id", "messages", "trigger", "messageId")


@dataclass(slots=True)
class Started:
    """A new reply, opened for its first reader (the POST's own response)."""

    stream_id: str
    opened: Opened
    outlet: Outlet


def chat_request(raw: dict[str, Any], settings: Settings) -> ChatCompletionRequest:
    """The chat request of a transport body: its UI messages converted, every other field
    but the transport's own forwarded as the client sent it (``tools`` among them)."""
    body = {k: v for k, v in raw.items() if k not in _UI_FIELDS and k != "stream"}
    body["messages"] = to_chat_messages(raw.get("messages"))
    body["stream"] = True
    return parse_chat_object(body, settings)


def response_message_id(messages: list[Any]) -> str:
    """The reply's UI message id: a continuation (the last message is the assistant's, e.g.
    after a client-side tool result) keeps its id, as the SDK's own server does."""
    last = messages[-1]
    if last.get("role") == "assistant" and isinstance(last.get("id"), str) and last["id"]:
        if len(last["id"]) > MAX_MESSAGE_ID_CHARS:  # it goes into the chat's record
            raise InvalidRequest(
                f"A message id has at most {MAX_MESSAGE_ID_CHARS} characters.",
                param=f"messages[{len(messages) - 1}].id",
            )
        return str(last["id"])
    return f"msg_{uuid.uuid4().hex}"


def _no_reply(chat_id: str) -> NotFound:
    return NotFound(
        f"No reply to stop in chat {shown(chat_id)}.", param="id", code="chat_not_found"
    )


class UiChat:
    def __init__(
        self, engine: StreamEngine, chats: ChatStore, settings: Settings, config: StreamSettings
    ) -> None:
        self.engine = engine
        self.chats = chats
        self.settings = settings
        self.config = config
        # binds still on their way, by (user, chat): a resume or stop on this node waits
        # for them, so it never finds the previous reply right after a send
        self._binding: dict[tuple[str, str], asyncio.Task[None]] = {}

    @staticmethod
    def _format(stream_id: str, message_id: str) -> Any:
        def make(_: StreamInfo) -> Format:
            return UiMessageChunks(stream_id, message_id)

        return make

    async def start(
        self, user: str, body: bytes, accepted: float, grace_header: str | None = None
    ) -> Started:
        """Admit and start the reply (errors raise before anything is sent), bind it to the
        chat (in the background: nothing waits for the store before the first token).
        ``grace_header``: the request's ``X-Resume-Grace-S`` (SPEC 11), if any."""
        try:
            raw = json_input.decode(body) if body.strip() else None
        except msgspec.DecodeError as exc:
            if isinstance(exc, InvalidRequest):  # nested too deeply: its own 400
                raise
            raise InvalidRequest(
                f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
            ) from exc
        if not isinstance(raw, dict):
            raise InvalidRequest("The body must be the chat transport's JSON object.")
        chat_id = raw.get("id")
        if not CHAT_ID.is_valid(chat_id):
            raise InvalidRequest(
                "'id' must be the chat's id: 1 to 128 letters, digits or _.:@+=~- .",
                param="id",
            )
        assert isinstance(chat_id, str)
        request = chat_request(raw, self.settings)
        message_id = response_message_id(raw["messages"])
        stream = await self.engine.create(user, request, accepted, grace_header=grace_header)
        self._bind(user, chat_id, ChatReply(stream.id, message_id, now_ms()))
        outlet = Outlet()
        try:
            opened = await self.engine.open(
                user, stream.id, 0, self._format(stream.id, message_id), sink=outlet
            )
        except BaseException:
            await self.engine.stop_anywhere(stream.id, StopReason.CLIENT)  # nobody reads it
            raise
        return Started(stream.id, opened, outlet)

    def _bind(self, user: str, chat_id: str, reply: ChatReply) -> None:
        key = (user, chat_id)

        async def bind() -> None:
            try:
                await self.chats.bind(user, chat_id, reply)
            except Exception:
                log.warning("chat %s: reply %s not bound", chat_id, reply.stream_id, exc_info=True)
            finally:
                if self._binding.get(key) is task:
                    del self._binding[key]

        task = asyncio.ensure_future(bind())
        self._binding[key] = task

    async def _newest(self, user: str, chat_id: str) -> ChatReply | None:
        if not CHAT_ID.is_valid(chat_id):
            return None
        pending = self._binding.get((user, chat_id))
        if pending is not None:
            await asyncio.shield(pending)
        return await self.chats.newest(user, chat_id)

    async def resume(self, user: str, chat_id: str) -> tuple[str, Opened, Outlet] | None:
        """The chat's newest reply from its first chunk (live to its end), or None: no reply
        (another user's chat has none for this user), or its stream is gone."""
        reply = await self._newest(user, chat_id)
        if reply is None:
            return None
        outlet = Outlet()
        try:
            opened = await self.engine.open(
                user,
                reply.stream_id,
                0,
                self._format(reply.stream_id, reply.message_id),
                sink=outlet,
            )  # its own stream made moments ago on another node waits for its record
        except NotFound:
            return None
        return reply.stream_id, opened, outlet

    async def stop(self, user: str, chat_id: str) -> dict[str, Any]:
        """Cancel the chat's running reply, wherever it runs; its open streams end with
        ``abort`` and ``finish``."""
        reply = await self._newest(user, chat_id)
        if reply is None:
            raise _no_reply(chat_id)
        try:
            result = await self.engine.cancel(user, reply.stream_id)
        except ApiError as exc:
            if exc.status_code == 404:  # its stream expired
                raise _no_reply(chat_id) from None
            raise
        return {"id": chat_id, "stream_id": reply.stream_id, "status": result["status"]}

    async def close(self) -> None:
        pending = list(self._binding.values())
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        self.chats.close()
