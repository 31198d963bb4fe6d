"""Rooms in this process only (``STREAM_STORE=memory``): the same semantics as DynamoDB."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from stream_service.store.rooms_base import (
    Role,
    Room,
    RoomFull,
    RoomLimits,
    RoomMessage,
    RoomNotFound,
    RoomStore,
    RunningReply,
    TooManyRooms,
    clamp,
    message_id,
    now_ms,
)


@dataclass(slots=True)
class _Room:
    room: Room
    expires_at: float
    next_seq: int = 0
    messages: list[RoomMessage] = field(default_factory=list)
    replies: dict[str, tuple[RunningReply, float]] = field(default_factory=dict)


class MemoryRoomStore(RoomStore):
    def __init__(self, limits: RoomLimits) -> None:
        super().__init__(limits)
        self._rooms: dict[str, _Room] = {}
        self._created: dict[str, set[str]] = {}  # user -> the rooms they created

    def _live(self, room_id: str) -> _Room | None:
        entry = self._rooms.get(room_id)
        if entry is None:
            return None
        if entry.expires_at <= time.time():
            del self._rooms[room_id]
            return None
        return entry

    async def create(self, room_id: str, creator: str) -> Room:
        if self._live(room_id) is not None:
            raise ValueError(f"room {room_id} exists")
        created = self._created.setdefault(creator, set())
        created.intersection_update([rid for rid in created if self._live(rid) is not None])
        if len(created) >= self.limits.max_rooms_per_user:
            raise TooManyRooms(self.limits.max_rooms_per_user)
        created.add(room_id)
        room = Room(room_id, creator, frozenset({creator}), now_ms())
        self._rooms[room_id] = _Room(room, time.time() + self.limits.ttl_s)
        return room

    async def get(self, room_id: str) -> Room | None:
        entry = self._live(room_id)
        return None if entry is None else entry.room

    async def add_member(self, room_id: str, actor: str, user: str) -> Room:
        entry = self._live(room_id)
        if entry is None or actor not in entry.room.members:
            raise RoomNotFound(room_id)
        members = entry.room.members
        if user not in members and len(members) >= self.limits.max_members:
            raise RoomFull(room_id)
        entry.room = Room(room_id, entry.room.created_by, members | {user}, entry.room.created_ms)
        return entry.room

    async def append_all(
        self,
        room_id: str,
        user: str,
        role: Role,
        contents: list[str],
        stream_id: str | None = None,
    ) -> list[RoomMessage]:
        for content in contents:
            self.check_size(content)
        entry = self._live(room_id)
        if entry is None:
            raise RoomNotFound(room_id)
        out = []
        for part, content in enumerate(contents, 1):
            entry.next_seq += 1
            seq = entry.next_seq
            out.append(RoomMessage(message_id(seq), seq, user, role, content, now_ms(),
                                   stream_id, part, len(contents)))  # fmt: skip
        entry.messages.extend(out)
        entry.messages = clamp(entry.messages, self.limits)
        entry.expires_at = time.time() + self.limits.ttl_s
        return out

    async def messages(self, room_id: str) -> list[RoomMessage]:
        entry = self._live(room_id)
        return [] if entry is None else list(entry.messages)

    async def add_reply(self, room_id: str, stream_id: str, user: str) -> None:
        entry = self._live(room_id)
        if entry is None:
            raise RoomNotFound(room_id)
        reply = RunningReply(stream_id, user, now_ms())
        entry.replies[stream_id] = (reply, time.time() + self.limits.reply_ttl_s)

    async def remove_reply(self, room_id: str, stream_id: str) -> None:
        entry = self._live(room_id)
        if entry is not None:
            entry.replies.pop(stream_id, None)

    async def replies(self, room_id: str) -> list[RunningReply]:
        entry = self._live(room_id)
        if entry is None:
            return []
        now = time.time()
        live = [reply for reply, until in entry.replies.values() if until > now]
        return sorted(live, key=lambda r: r.started_ms)
