"""What the stream service mounts: :func:`realtime_routes`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Litestar, WebSocket, websocket
from litestar.types import ControllerRouterHandler
from prometheus_client import CollectorRegistry

from core.auth import build_verifier
from core.auth.realtime_keys import RealtimeKeys
from core.providers import ModelProvider, build_provider
from core.settings import Settings
from stream_service.realtime.auth import Caller
from stream_service.realtime.endpoint import RealtimeEndpoint
from stream_service.realtime.limits import ClientLimits
from stream_service.realtime.metrics import RealtimeMetrics
from stream_service.realtime.protocol import ProtocolError
from stream_service.realtime.relay import UpstreamRelay
from stream_service.realtime.session import Backend, RealtimeSession, SessionRegistry
from stream_service.realtime.settings import RealtimeSettings, get_realtime_settings

PATH = "/stream/v1/realtime"


@dataclass(frozen=True, slots=True)
class RealtimeRoutes:
    handlers: list[ControllerRouterHandler]
    lifespan: Callable[[Litestar], AbstractAsyncContextManager[None]]
    registry: SessionRegistry
    metrics: RealtimeMetrics

    async def drain(self) -> None:
        """The node is draining (SIGTERM): register with ``engine.on_drain``."""
        await self.registry.drain()


def realtime_routes(
    settings: Settings,
    *,
    config: RealtimeSettings | None = None,
    registry: CollectorRegistry | None = None,
    provider: ModelProvider | None = None,
) -> RealtimeRoutes:
    """The voice socket for the stream service: mount ``handlers`` and ``lifespan``.

    ``registry`` is the Prometheus registry ``/stream/metrics`` serves (the engine's)."""
    config = config or get_realtime_settings()
    metrics = RealtimeMetrics(registry)
    sessions = SessionRegistry(config, metrics)
    keys = RealtimeKeys(settings.url_token_keys())
    local_parts: list[Any] = []  # the stand-in's shared parts, built on first use

    def make_backend(caller: Caller, limits: ClientLimits) -> Backend:
        if settings.provider == "openai":
            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
            return UpstreamRelay(
                settings=config,
                metrics=metrics,
                base_url=settings.openai_base_url,
                api_key=key,
                initial_session=caller.session,
            )
        return _local_backend(caller, limits)

    def _local_backend(caller: Caller, limits: ClientLimits) -> Backend:
        try:
            from stream_service.realtime.local.asr import Transcriber
            from stream_service.realtime.local.standin import LocalVoice
            from stream_service.realtime.local.tts import Speaker, SpeechUnavailable
        except ImportError as exc:  # the `voice` extra is not installed
            return _Refusing(f"The local voice stand-in is not installed ({exc.name}).")
        if not local_parts:
            try:
                speaker = Speaker(config.local_tts_voice, config.local_tts_wpm)
            except SpeechUnavailable as exc:
                return _Refusing(str(exc))
            local_parts.extend(
                [provider or build_provider(settings), speaker, Transcriber(config.asr_workers)]
            )
        chat, speaker, transcriber = local_parts
        return LocalVoice(
            settings=config,
            provider=chat,
            speaker=speaker,
            transcriber=transcriber,
            limits=limits,
            initial_session=caller.session,
        )

    endpoint = RealtimeEndpoint(
        settings=config,
        registry=sessions,
        metrics=metrics,
        verifier=build_verifier(settings),
        keys=keys,
        provider_name=settings.provider,
        make_backend=make_backend,
    )

    @websocket(PATH)
    async def realtime_socket(socket: WebSocket[Any, Any, Any]) -> None:
        await endpoint.serve(socket)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sessions.close_all()
            if local_parts:
                await local_parts[2].aclose()

    return RealtimeRoutes([realtime_socket], lifespan, sessions, metrics)


class _Refusing:
    """A backend that cannot start: the session gets a clear error and ends."""

    def __init__(self, message: str) -> None:
        self._message = message

    async def start(self, session: RealtimeSession) -> None:
        raise ProtocolError(self._message, "voice_unavailable", type="server_error")

    async def handle(self, frame: str, envelope: Any, received_at: float) -> None:
        return None

    async def close(self) -> None:
        return None
