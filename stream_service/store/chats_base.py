"""The chat store: which stream holds a chat's newest reply (the AI SDK's resume finds it
here). Same table as streams (``C#<chat id>`` partitions).

Semantics every backend keeps:
- A chat id is bound to the user who sent it: each user has their own record under the
  same chat id, so another user's chat id simply has no reply (nothing leaks, nothing is
  overwritten).
- ``bind`` records a newer reply only: a record is replaced by one created at the same
  time or later (two tabs posting at once leave the newest).
- A record lives ``ttl_s`` (the stream's own TTL: its events are gone by then anyway).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A chat's newest reply: the stream that holds it and its UI message id."""

    stream_id: str
    message_id: str
    created_ms: int


class ChatStore(abc.ABC):
    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s

    def expires_at(self) -> int:
        return int(time.time()) + self.ttl_s

    @abc.abstractmethod
    async def bind(self, user: str, chat_id: str, reply: ChatReply) -> None:
        """Make ``reply`` the newest of ``user``'s chat ``chat_id`` (unless a newer one is)."""

    @abc.abstractmethod
    async def newest(self, user: str, chat_id: str) -> ChatReply | None:
        """``user``'s newest reply in ``chat_id``; None when there is none (or it expired)."""

    def close(self) -> None:
        return None
