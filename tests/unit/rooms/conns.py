"""A stand-in connection for the room service (the WebSocket transport plugs in the same
way): records the frames it was sent, with a bounded buffer."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec


class Conn:
    def __init__(self, user: str, capacity: int = 10_000) -> None:
        self.user = user
        self.capacity = capacity
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def send(self, frame: bytes) -> bool:
        if len(self.frames) >= self.capacity:
            return False
        self.frames.append(msgspec.json.decode(frame))
        self._changed.set()
        return True

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == type_]

    def presence(self) -> list[tuple[str, str]]:
        return [(f["user"], f["state"]) for f in self.of("presence")]

    def typing(self) -> list[tuple[str, bool]]:
        return [(f["user"], f["active"]) for f in self.of("typing")]

    async def wait(
        self, match: dict[str, Any], within: float = 5.0, since: int = 0
    ) -> dict[str, Any]:
        """The first frame from index ``since`` on (already received or coming) that has
        all of ``match``'s items."""
        async with asyncio.timeout(within):
            while True:
                for frame in self.frames[since:]:
                    if all(frame.get(k) == v for k, v in match.items()):
                        return frame
                self._changed.clear()
                await self._changed.wait()

    def __repr__(self) -> str:
        return f"Conn({self.user})"
