"""The stream service app factory: engine, store and provider built once, routes mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from core.auth import UrlTokens, build_verifier
from core.aws import clients
from core.aws.tables import ensure_tables
from core.http.auth import PRINCIPAL_DEPENDENCY
from core.http.errors import EXCEPTION_HANDLERS
from core.http.ids import require_valid_path_ids
from core.providers import ModelProvider, build_provider
from core.settings import Settings, get_settings
from stream_service.config import StreamSettings, get_stream_settings
from stream_service.domain.chat.controller import StreamChatController
from stream_service.domain.dependencies import StreamServices
from stream_service.domain.ops.controller import healthz, metrics
from stream_service.domain.rooms import (
    RoomsController,
    build_room_service,
    room_dependencies,
    room_lifespan,
)
from stream_service.domain.streams.controller import StreamsController
from stream_service.domain.ui_chat import UiChatController, build_ui_chat
from stream_service.domain.ws.controller import ws_chat, ws_ticket
from stream_service.engine.engine import StreamEngine
from stream_service.realtime import realtime_routes
from stream_service.rooms.service import RoomService
from stream_service.store import StreamStore
from stream_service.store.dynamodb import DynamoStreamStore
from stream_service.store.memory import MemoryStore
from stream_service.transports.ws.config import get_ws_settings
from stream_service.transports.ws.hub import WsHub
from stream_service.transports.ws.room_replies import RoomReplies


class NodeGauges:
    """What the node reports about itself (CloudWatch, stream_service/aws/cloudwatch.py)."""

    def __init__(self, engine: StreamEngine, rooms: RoomService) -> None:
        self._engine = engine
        self._rooms = rooms

    def active_streams(self) -> float:
        """Producers running on this node."""
        return self._engine.metrics.registry.get_sample_value("rtai_stream_active_streams") or 0.0

    @property
    def has_shared_bus(self) -> bool:
        """True with a bus other nodes are on (``BUS_URL``): only then can it be down."""
        return self._rooms.bus.shared

    def bus_connected(self) -> float:
        return 1.0 if self._rooms.bus.health().connected else 0.0


def build_store(settings: Settings, config: StreamSettings) -> StreamStore:
    if config.stream_store == "memory":
        return MemoryStore(ttl_s=config.stream_ttl_s, max_batch=config.flush_max_events)
    client = clients.dynamodb(settings)
    if settings.is_local_aws:
        ensure_tables(client, settings)
    return DynamoStreamStore(
        client, settings.streams_table, ttl_s=config.stream_ttl_s, max_batch=config.flush_max_events
    )


def provide_each(services: dict[str, Any]) -> dict[str, Provide]:
    """One dependency per built service, each answering the same instance."""

    def provider(value: Any) -> Provide:
        def provide() -> Any:
            return value

        return Provide(provide, use_cache=True, sync_to_thread=False)

    return {name: provider(value) for name, value in services.items()}


def create_app(
    settings: Settings | None = None,
    config: StreamSettings | None = None,
    store: StreamStore | None = None,
    provider: ModelProvider | None = None,
) -> Litestar:
    settings = settings or get_settings()
    config = config or get_stream_settings()
    engine = StreamEngine(
        settings,
        config,
        store or build_store(settings, config),
        provider or build_provider(settings, stream_read_timeout_s=None, http_client="push"),
    )

    voice = realtime_routes(settings, registry=engine.metrics.registry)
    ws_config = get_ws_settings()
    rooms = build_room_service(settings, config, registry=engine.metrics.registry)
    room_model = ws_config.room_model or (settings.models or settings.local_models).split(",")[0]
    replies = RoomReplies(engine, rooms, room_model.strip())
    engine.shared_access = replies.may_read  # members read, resume, cancel room replies
    rooms.set_reply_status(engine.running_position)
    rooms.fit_frames(ws_config.send_buffer_bytes)  # a `joined` never overflows a socket
    ws_hub = WsHub()
    ui_chat = build_ui_chat(engine, settings, config)  # the AI SDK's useChat (SPEC 10)
    # SIGTERM: rooms stop announcing this node's members (no left/joined flicker for those
    # who reconnect elsewhere), then every socket is asked to reconnect (1012).
    engine.on_drain(rooms.drain)
    engine.on_drain(ws_hub.close_all)
    engine.on_drain(voice.drain)  # voice sessions end with 1012: a new one elsewhere

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await replies.stop()
            await engine.stop()
            await ui_chat.close()

    # Read the URL-token key now (a missing or short one stops the start-up); it is re-read
    # on rotation (core/auth/keys.py).
    _ = settings.url_token_key
    url_keys = settings.url_token_keys()
    url_tokens = UrlTokens(url_keys, settings.url_token_ttl_s)
    verifier = build_verifier(settings)
    services: dict[str, Any] = {
        "streams": StreamServices(engine, settings, config, url_tokens),
        "engine": engine,
        "settings": settings,
        "stream_config": config,
        "url_tokens": url_tokens,
        "verifier": verifier,
        "ws_config": ws_config,
        "ws_tickets": UrlTokens(url_keys, ws_config.ticket_ttl_s),
        "room_replies": replies,
        "ws_hub": ws_hub,
        "ui_chat": ui_chat,
    }
    return Litestar(
        route_handlers=[
            healthz,
            metrics,
            StreamsController,
            StreamChatController,
            UiChatController,
            RoomsController,
            ws_ticket,
            ws_chat,
            *voice.handlers,
        ],
        # Handlers name what they need (``engine: StreamEngine`` ...); nothing reaches into
        # ``app.state`` for a service.
        dependencies={
            **PRINCIPAL_DEPENDENCY,
            **provide_each(services),
            **room_dependencies(rooms),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        guards=[require_valid_path_ids],  # a malformed id is a 404 before any store call
        request_max_body_size=settings.max_request_bytes,
        lifespan=[lifespan, voice.lifespan, room_lifespan(rooms)],
        state=State(
            {
                "settings": settings,
                "stream_config": config,
                "engine": engine,
                "verifier": verifier,
                "url_tokens": url_tokens,
                "node_gauges": NodeGauges(engine, rooms),
            }
        ),
        openapi_config=None,
    )
