"""Small builders shared by the engine part tests: a live stream, a store that records its
write operations, a chat request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from core.schemas.chat import ChatCompletionRequest, ChatMessage
from stream_service.engine.events import StreamInfo
from stream_service.engine.live import LiveStream, Timings
from stream_service.store.memory import MemoryStore


def live_stream(stream_id: str = "s1", owner: str = "u", window: int = 4096) -> LiveStream:
    info = StreamInfo("chatcmpl-test", "local-model", int(time.time()), include_usage=False)
    return LiveStream(
        id=stream_id,
        owner=owner,
        info=info,
        window=window,
        timings=Timings(accepted=time.perf_counter()),
    )


def recording_store(**kwargs: object) -> tuple[MemoryStore, list[str]]:
    """A memory store and the list of write operations it performs, in order."""
    store = MemoryStore(**kwargs)  # type: ignore[arg-type]
    ops: list[str] = []
    store.observe_writes(lambda op, _seconds: ops.append(op))
    return store, ops


def chat(prompt: str, model: str = "local-model") -> ChatCompletionRequest:
    return ChatCompletionRequest(model=model, messages=[ChatMessage(role="user", content=prompt)])


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)
