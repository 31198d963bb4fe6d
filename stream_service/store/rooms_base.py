"""The room store: room records (creator, members), each room's conversation and its
running assistant replies. Same table as streams (``R#<room id>`` partitions).

Semantics every backend keeps:
- A room lives ``ttl_s`` after its last message (created: ``ttl_s`` after creation); then
  it is gone for everyone (DynamoDB TTL), as if it never existed.
- Only a member adds members; to anyone else the room does not exist (:class:`RoomNotFound`).
  At most ``max_members`` members (:class:`RoomFull`). One user has at most
  ``max_rooms_per_user`` rooms they created alive at once (:class:`TooManyRooms`).
- The conversation is bounded: at most ``max_messages`` messages and ``max_bytes`` bytes of
  content; beyond either bound the OLDEST messages are dropped (the window a model sees
  moves on). A single message over ``max_message_bytes`` is refused (:class:`MessageTooLarge`).
- Message ids are unique within a room and sort in append order (``m<seq, 10 digits>``).
- A running reply is listed until it is removed or ``reply_ttl_s`` passes (a lost
  producer's entry lapses by itself).
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "assistant"]


def now_ms() -> int:
    return int(time.time() * 1000)


def message_id(seq: int) -> str:
    return f"m{seq:010d}"


def message_seq(message_id: str) -> int:
    """The seq in a message id (``m<seq>``); 0 if it is not one."""
    digits = message_id[1:]
    return int(digits) if message_id[:1] == "m" and digits.isdigit() else 0


def content_bytes(content: str) -> int:
    return len(content.encode("utf-8"))


class RoomError(Exception):
    """A room request that cannot be done; ``code`` is the client-facing error code."""

    code = "room_error"


class RoomNotFound(RoomError):
    """No such room, or the caller is not a member of it (the two are not told apart)."""

    code = "room_not_found"

    def __init__(self, room_id: str = "") -> None:
        super().__init__("No such room (or you are not a member of it).")
        self.room_id = room_id


class RoomFull(RoomError):
    """The room has ``max_members`` members already."""

    code = "room_full"

    def __init__(self, room_id: str = "") -> None:
        super().__init__("The room has the most members it may have.")
        self.room_id = room_id


class MessageTooLarge(RoomError):
    """One message's content is over ``max_message_bytes``."""

    code = "message_too_large"


class TooManyRooms(RoomError):
    """The user created ``max_rooms_per_user`` rooms that are still alive."""

    code = "too_many_rooms"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You have {limit} rooms, the most one user may create; a room counts until it "
            "expires (ROOM_TTL_S after its last message)."
        )
        self.limit = limit


class TooManyJoined(RoomError):
    """One connection is in ``ROOM_MAX_JOINED_PER_SOCKET`` rooms already."""

    code = "too_many_joined_rooms"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This connection is in {limit} rooms, the most it may join; leave one first."
        )
        self.limit = limit


@dataclass(frozen=True, slots=True)
class RoomLimits:
    max_members: int = 50
    max_messages: int = 200
    max_bytes: int = 512 * 1024
    max_message_bytes: int = 32 * 1024
    ttl_s: int = 7 * 24 * 3600
    reply_ttl_s: int = 3600
    max_rooms_per_user: int = 100


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    created_by: str
    members: frozenset[str]
    created_ms: int

    def has_member(self, user: str) -> bool:
        return user in self.members


@dataclass(frozen=True, slots=True)
class RoomMessage:
    id: str
    seq: int
    user: str
    role: Role
    content: str
    at_ms: int
    # an assistant reply's message: its stream, and which part of it (a reply longer than
    # ``max_message_bytes`` is stored as several messages, in order)
    stream_id: str | None = None
    part: int = 1
    parts: int = 1

    def public(self) -> dict[str, str | int]:
        """The message as SPEC section 6 lists it in ``joined`` (a reply's also carries its
        ``stream_id``, and ``part`` / ``parts`` when it was split)."""
        out: dict[str, str | int] = {
            "id": self.id, "user": self.user, "role": self.role, "content": self.content
        }  # fmt: skip
        if self.stream_id is not None:
            out["stream_id"] = self.stream_id
            if self.parts > 1:
                out["part"], out["parts"] = self.part, self.parts
        return out


@dataclass(frozen=True, slots=True)
class RunningReply:
    stream_id: str
    user: str
    started_ms: int


def clamp(messages: list[RoomMessage], limits: RoomLimits) -> list[RoomMessage]:
    """The newest messages (in order) within both bounds."""
    kept: list[RoomMessage] = []
    total = 0
    for message in reversed(messages):
        size = content_bytes(message.content)
        if len(kept) >= limits.max_messages or total + size > limits.max_bytes:
            break
        kept.append(message)
        total += size
    kept.reverse()
    return kept


class RoomStore(abc.ABC):
    def __init__(self, limits: RoomLimits) -> None:
        self.limits = limits

    def expires_at(self, ttl_s: int | None = None) -> int:
        return int(time.time()) + (self.limits.ttl_s if ttl_s is None else ttl_s)

    def check_size(self, content: str) -> int:
        size = content_bytes(content)
        if size > self.limits.max_message_bytes:
            raise MessageTooLarge(
                f"A room message may have at most {self.limits.max_message_bytes} bytes "
                f"(this one has {size})."
            )
        return size

    @abc.abstractmethod
    async def create(self, room_id: str, creator: str) -> Room:
        """A new room, ``creator`` its first member; raises TooManyRooms."""

    @abc.abstractmethod
    async def get(self, room_id: str) -> Room | None: ...

    @abc.abstractmethod
    async def add_member(self, room_id: str, actor: str, user: str) -> Room:
        """``actor`` (a member) adds ``user``; raises RoomNotFound / RoomFull."""

    async def append(self, room_id: str, user: str, role: Role, content: str) -> RoomMessage:
        """Store one message (trimming the oldest beyond the bounds); raises RoomNotFound /
        MessageTooLarge. Membership is the caller's check."""
        return (await self.append_all(room_id, user, role, [content]))[0]

    @abc.abstractmethod
    async def append_all(
        self,
        room_id: str,
        user: str,
        role: Role,
        contents: list[str],
        stream_id: str | None = None,
    ) -> list[RoomMessage]:
        """Store messages of one author with consecutive seqs (nothing else between
        them): the parts of one reply of ``stream_id`` when it is given. As :meth:`append`."""

    @abc.abstractmethod
    async def messages(self, room_id: str) -> list[RoomMessage]:
        """The stored conversation, oldest first, within the bounds."""

    @abc.abstractmethod
    async def add_reply(self, room_id: str, stream_id: str, user: str) -> None: ...

    @abc.abstractmethod
    async def remove_reply(self, room_id: str, stream_id: str) -> None: ...

    @abc.abstractmethod
    async def replies(self, room_id: str) -> list[RunningReply]: ...

    def close(self) -> None:
        return None
