"""A room's stored conversation as the chat messages of the assistant's next reply.

Several people share one conversation, so each user message says who wrote it: the
content is prefixed with the author (``alice: ...``), which every model reads, and the
OpenAI ``name`` field carries the author too where it fits that field's pattern. A reply
stored in parts (:mod:`.reply_parts`) is one assistant message again.
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
    reply: str | None = None  # the stream of the assistant message just added
    for m in messages:
        if m.role == "assistant":
            if m.stream_id is not None and m.stream_id == reply and m.part > 1:
                # the next part of a reply stored in parts: one message to the model
                out[-1] = ChatMessage(role="assistant", content=f"{out[-1].text()}{m.content}")
            else:
                out.append(ChatMessage(role="assistant", content=m.content))
            reply = m.stream_id
        else:
            out.append(
                ChatMessage(role="user", content=f"{m.user}: {m.content}", name=author_name(m.user))
            )
            reply = None
    return out
