"""The one-node bus (``BUS_URL`` unset): publications reach this process's subscribers only."""

from __future__ import annotations

from stream_service.rooms.bus.base import Bus, BusState


class MemoryBus(Bus):
    kind = "memory"

    async def start(self) -> None:
        self._set_state(BusState.CONNECTED)

    async def close(self) -> None:
        self._set_state(BusState.CLOSED)
        self._subs.clear()
        self.metrics.channels.set(0)

    async def _publish_remote(self, channel: str, data: bytes) -> bool:
        return True  # there is no other node

    async def _subscribe_remote(self, channel: str) -> None:
        return None

    async def _unsubscribe_remote(self, channel: str) -> None:
        return None
