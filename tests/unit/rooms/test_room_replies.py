"""Room replies on one node (memory store, memory bus, the local model): a ``chat.send``
the engine refuses (draining, unknown model, the member's per-user limit) adds nothing to
the room, so a retry is the only copy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.errors import ApiError
from core.providers.local import LocalProvider
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import StreamEngine
from stream_service.rooms.bus.memory import MemoryBus
from stream_service.rooms.config import RoomSettings
from stream_service.rooms.service import RoomService
from stream_service.store.memory import MemoryStore
from stream_service.store.rooms_base import RoomLimits
from stream_service.store.rooms_memory import MemoryRoomStore
from stream_service.transports.ws.room_replies import RoomReplies
from tests.unit.rooms.conns import Conn

MODEL = "local-model"


@pytest.fixture
async def replies() -> AsyncIterator[RoomReplies]:
    engine = StreamEngine(
        Settings(keepalive_s=0.5, resume_grace_s=30, max_streams_per_user=1),
        StreamSettings(node_id="n1"),
        MemoryStore(),
        LocalProvider([MODEL], 0.0, 0.05),
    )
    rooms = RoomService(MemoryRoomStore(RoomLimits()), MemoryBus("n1"),
                        RoomSettings(presence_sync_ms=0))  # fmt: skip
    out = RoomReplies(engine, rooms, MODEL)
    engine.shared_access = out.may_read
    await engine.start()
    await rooms.start()
    yield out
    await out.stop()
    await rooms.stop()
    await engine.stop()


@pytest.mark.parametrize("refusal", ["draining", "unknown model", "per-user limit"])
async def test_a_refused_send_adds_nothing_to_the_room(replies: RoomReplies, refusal: str) -> None:
    rooms = replies.rooms
    room = await rooms.create_room("alice")
    await rooms.add_member("alice", room.id, "bob")
    bob = Conn("bob")
    await rooms.join(bob, room.id)
    model = "no-such-model" if refusal == "unknown model" else None
    if refusal == "per-user limit":
        await replies.start("alice", room.id, "first", None)  # her one stream
    if refusal == "draining":
        replies.engine.draining = True
    before = await rooms.conversation(room.id)
    with pytest.raises(ApiError) as refused:
        await replies.start("alice", room.id, "hello?", model)
    assert refused.value.code in ("draining", "model_not_found", "too_many_streams")
    assert await rooms.conversation(room.id) == before
    assert [f for f in bob.of("message") if f["content"] == "hello?"] == []
