"""Chats in this process only (``STREAM_STORE=memory``): the same semantics as DynamoDB."""

from __future__ import annotations

import time

from stream_service.store.chats_base import ChatReply, ChatStore


class MemoryChatStore(ChatStore):
    def __init__(self, ttl_s: int) -> None:
        super().__init__(ttl_s)
        self._chats: dict[tuple[str, str], tuple[ChatReply, float]] = {}

    async def bind(self, user: str, chat_id: str, reply: ChatReply) -> None:
        key = (user, chat_id)
        current = await self.newest(user, chat_id)
        if current is None or current.created_ms <= reply.created_ms:
            self._chats[key] = (reply, time.time() + self.ttl_s)

    async def newest(self, user: str, chat_id: str) -> ChatReply | None:
        entry = self._chats.get((user, chat_id))
        if entry is None:
            return None
        reply, expires = entry
        if expires <= time.time():
            del self._chats[(user, chat_id)]
            return None
        return reply
