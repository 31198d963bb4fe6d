"""``/stream/v1/ui/chat``: the AI SDK's chat protocol (SPEC section 10)."""

from __future__ import annotations

from core.aws import clients
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.domain.ui_chat.controller import UiChatController
from stream_service.domain.ui_chat.service import UiChat
from stream_service.engine.engine import StreamEngine
from stream_service.store import StreamStore
from stream_service.store.chats_base import ChatStore
from stream_service.store.chats_dynamodb import DynamoChatStore
from stream_service.store.chats_memory import MemoryChatStore
from stream_service.store.memory import MemoryStore


def build_chat_store(settings: Settings, config: StreamSettings, streams: StreamStore) -> ChatStore:
    """Beside the streams, in the same store: the streams table, or this process's memory
    when the streams are there (``STREAM_STORE=memory``, tests)."""
    if config.stream_store == "memory" or isinstance(streams, MemoryStore):
        return MemoryChatStore(ttl_s=config.stream_ttl_s)
    return DynamoChatStore(
        clients.dynamodb(settings), settings.streams_table, ttl_s=config.stream_ttl_s
    )


def build_ui_chat(engine: StreamEngine, settings: Settings, config: StreamSettings) -> UiChat:
    chats = build_chat_store(settings, config, engine.store)
    return UiChat(engine, chats, settings, config)


__all__ = ["UiChat", "UiChatController", "build_chat_store", "build_ui_chat"]
