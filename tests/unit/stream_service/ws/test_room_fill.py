"""The node's shared reader of a room reply (transports/ws/room_fill.py), on the in-memory
engine: one reader seat whatever the number of sockets, each socket gets every event after
its own position exactly once, through `done`, also when one subscribes behind the reader."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from core.errors import ApiError
from core.providers.local import LocalProvider
from core.schemas.chat import ChatCompletionRequest, ChatMessage
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import StreamEngine
from stream_service.store.memory import MemoryStore
from stream_service.transports.ws.room_fill import ReplyFills


class Target:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.ended = asyncio.Event()
        self.error: ApiError | None = None

    def fill_frame(self, stream_id: str, seq: int, frame: bytes, terminal: bool) -> bool:
        assert json.loads(frame)["seq"] == seq and json.loads(frame)["stream_id"] == stream_id
        self.seqs.append(seq)
        return True

    def fill_ended(self, stream_id: str, error: ApiError | None) -> None:
        self.error = error
        self.ended.set()


@pytest.fixture
async def engine() -> AsyncIterator[StreamEngine]:
    out = StreamEngine(
        Settings(keepalive_s=1, resume_grace_s=30),
        StreamSettings(node_id="n1", max_readers_per_stream=2),
        MemoryStore(),
        LocalProvider(["local-model"], 0.0, 0.01),
    )
    await out.start()
    yield out
    await out.stop()


async def test_many_sockets_share_one_reader_and_get_every_event(engine: StreamEngine) -> None:
    request = ChatCompletionRequest(model="local-model",
                                    messages=[ChatMessage(role="user", content="/tokens 40")])  # fmt: skip
    stream = await engine.create("room:r1", request, time.perf_counter(), observer=lambda e: None)
    while stream.last_seq < 10:
        await asyncio.sleep(0.01)
    fills = ReplyFills(engine, record_wait_s=1.0)
    ahead = [Target() for _ in range(10)]  # more than MAX_READERS_PER_STREAM (2)
    for target in ahead:
        fills.subscribe(stream.id, 8, target)
    assert fills.readers() == 1
    while stream.last_seq < 20:
        await asyncio.sleep(0.01)
    behind = Target()
    fills.subscribe(stream.id, 3, behind)  # behind the shared reader: it reads again
    for target in [*ahead, behind]:
        await asyncio.wait_for(target.ended.wait(), 10)
        assert target.error is None
    last = stream.last_seq
    for target in ahead:
        assert target.seqs == list(range(9, last + 1))
    assert behind.seqs == list(range(4, last + 1))
    assert fills.readers() == 0 and engine.presence.open_readers == 0
