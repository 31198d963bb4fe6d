"""The bus a node uses: none configured (``BUS_URL`` unset), the in-process one; else
Redis/Valkey, one server or a cluster (``BUS_MODE``)."""

from __future__ import annotations

from stream_service.rooms.bus.base import Bus, BusMetrics
from stream_service.rooms.bus.memory import MemoryBus
from stream_service.rooms.config import BusMode, RoomSettings


def build_bus(config: RoomSettings, node_id: str, metrics: BusMetrics | None = None) -> Bus:
    if config.bus_url is None:
        return MemoryBus(node_id, metrics)
    # redis-py only when a Redis bus is configured: importing it is a good part of a start
    from stream_service.rooms.bus.cluster import ClusterBus
    from stream_service.rooms.bus.redis import RedisBus

    kind = ClusterBus if config.bus_mode is BusMode.CLUSTER else RedisBus
    return kind(
        config.bus_url,
        node_id,
        metrics,
        reconnect_min_s=config.bus_reconnect_min_s,
        reconnect_max_s=config.bus_reconnect_max_s,
        ping_s=config.bus_ping_s,
        subscribe_timeout_s=config.bus_subscribe_timeout_s,
        subscribe_chunk=config.bus_subscribe_chunk,
    )
