"""Driving a voice session from a test: real-time audio through the SDK's realtime client,
and reading events until the one wanted."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

CHUNK_MS = 100


async def stream_audio(conn: Any, pcm: bytes, chunk_ms: int = CHUNK_MS) -> None:
    """Append ``pcm`` in ``chunk_ms`` pieces, each at its time: a microphone, not a file."""
    step = chunk_ms * 48
    start = time.monotonic()
    for n, offset in enumerate(range(0, len(pcm), step)):
        due = start + n * chunk_ms / 1000
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await conn.input_audio_buffer.append(
            audio=base64.b64encode(pcm[offset : offset + step]).decode()
        )


class Events:
    """Every event read from one connection, in order, with the time each arrived."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.seen: list[Any] = []
        self.times: list[float] = []

    async def until(self, match: Callable[[Any], bool] | str, within: float = 15.0) -> Any:
        if isinstance(match, str):
            kind = match

            def match(event: Any) -> bool:
                return bool(event.type == kind)

        async def read() -> Any:
            while True:
                event = await self.conn.recv()
                self.seen.append(event)
                self.times.append(time.monotonic())
                if match(event):
                    return event

        return await asyncio.wait_for(read(), within)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.seen if e.type == kind]

    def audio(self, response_id: str | None = None) -> bytes:
        return b"".join(
            base64.b64decode(e.delta)
            for e in self.seen
            if e.type == "response.output_audio.delta"
            and (response_id is None or e.response_id == response_id)
        )
