"""The bus a node uses: Redis/Valkey when ``BUS_URL`` is set, else the in-process one."""

from __future__ import annotations

from stream_service.rooms.bus.base import Bus, BusMetrics
from stream_service.rooms.bus.memory import MemoryBus
from stream_service.rooms.bus.redis import RedisBus
from stream_service.rooms.config import RoomSettings


def build_bus(config: RoomSettings, node_id: str, metrics: BusMetrics | None = None) -> Bus:
    if config.bus_url is None:
        return MemoryBus(node_id, metrics)
    return RedisBus(
        config.bus_url,
        node_id,
        metrics,
        reconnect_min_s=config.bus_reconnect_min_s,
        reconnect_max_s=config.bus_reconnect_max_s,
        ping_s=config.bus_ping_s,
        subscribe_timeout_s=config.bus_subscribe_timeout_s,
    )
