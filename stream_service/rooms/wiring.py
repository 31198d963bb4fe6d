"""Building the room service for a node, and what the app mounts: its dependency and
its lifespan (the bus, presence heartbeats and timers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from prometheus_client import CollectorRegistry

from core.aws import clients
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.rooms.bus.base import BusMetrics
from stream_service.rooms.bus.factory import build_bus
from stream_service.rooms.config import RoomSettings, get_room_settings
from stream_service.rooms.service import RoomService
from stream_service.store.rooms_base import RoomLimits, RoomStore
from stream_service.store.rooms_dynamodb import DynamoRoomStore
from stream_service.store.rooms_memory import MemoryRoomStore


def room_limits(config: RoomSettings) -> RoomLimits:
    return RoomLimits(
        max_members=config.room_max_members,
        max_messages=config.room_max_messages,
        max_bytes=config.room_max_bytes,
        max_message_bytes=config.room_max_message_bytes,
        ttl_s=config.room_ttl_s,
        reply_ttl_s=config.room_reply_ttl_s,
        max_rooms_per_user=config.room_max_rooms_per_user,
    )


def build_room_store(
    settings: Settings, stream_config: StreamSettings, config: RoomSettings
) -> RoomStore:
    """The same backend as the streams': DynamoDB (the streams table), or memory."""
    if stream_config.stream_store == "memory":
        return MemoryRoomStore(room_limits(config))
    return DynamoRoomStore(clients.dynamodb(settings), settings.streams_table, room_limits(config))


def build_room_service(
    settings: Settings,
    stream_config: StreamSettings,
    config: RoomSettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    store: RoomStore | None = None,
) -> RoomService:
    """One per node. ``registry``: the one ``/stream/metrics`` serves (the engine's)."""
    config = config or get_room_settings()
    metrics = BusMetrics(registry or CollectorRegistry())
    bus = build_bus(config, stream_config.node_id, metrics)
    return RoomService(
        store or build_room_store(settings, stream_config, config),
        bus,
        config,
        registry=metrics.registry,
    )


def room_dependencies(service: RoomService) -> dict[str, Provide]:
    """``rooms``: the handlers' :class:`RoomService` (annotate with ``domain.rooms.Rooms``)."""

    def provide_rooms() -> RoomService:
        return service

    return {"rooms": Provide(provide_rooms, use_cache=True, sync_to_thread=False)}


def room_lifespan(service: RoomService) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Starts the bus, heartbeats and timers with the app; stops them (members announced
    as gone to the other nodes) when it stops."""

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    return lifespan
