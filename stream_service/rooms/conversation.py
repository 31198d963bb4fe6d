"""A room's stored conversation as the chat messages of the assistant's next reply.

Several people share one conversation, so each user message says who wrote it: the
content is prefixed with the author (``alice: ...``), which every model reads, and the
OpenAI ``name`` field carries the author too where it fits that field's pattern.
"""

from __future__ import annotations

import re

from core.schemas.chat import ChatMessage
from stream_service.store.rooms_base import RoomMessage

_NAME = re.compile(r"[^A-Za-z0-9_-]")


def author_name(user: str) -> str | None:
    """``user`` as an OpenAI message ``name`` (``[A-Za-z0-9_-]{1,64}``), None if nothing
    of it is left."""
    name = _NAME.sub("_", user)[:64]
    return name if name.strip("_") else None


def as_chat_messages(messages: list[RoomMessage], system: str | None = None) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    if system:
        out.append(ChatMessage(role="system", content=system))
    for m in messages:
        if m.role == "assistant":
            out.append(ChatMessage(role="assistant", content=m.content))
        else:
            out.append(
                ChatMessage(role="user", content=f"{m.user}: {m.content}", name=author_name(m.user))
            )
    return out
