"""The REST API app factory. Same app on Lambda (via Mangum) and in ``make dev``."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.plugins import PluginProtocol
from litestar.types import ControllerRouterHandler

from core.auth import build_verifier
from core.auth.factory import dev_tokens
from core.http.auth import PRINCIPAL_DEPENDENCY
from core.http.errors import EXCEPTION_HANDLERS
from core.http.ids import require_valid_path_ids
from core.providers import ModelProvider, build_provider
from core.providers.lazy import LazyProvider
from core.settings import Settings, get_settings
from functions.api.domain.batches.controller import BatchesController
from functions.api.domain.chat.controller import ChatController
from functions.api.domain.dev_auth.controller import DevTokenController
from functions.api.domain.files.controller import FilesController
from functions.api.domain.models.controller import ModelsController
from functions.api.domain.realtime.controller import RealtimeController


class RestApp(Litestar):
    """Litestar without its pydantic and attrs plugins. No handler here takes or returns
    pydantic or attrs types (bodies are msgspec, answers dicts), and importing those
    plugins (pydantic.v1 with them) is a sixth of the Lambda's cold start."""

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        from litestar.plugins.core import MsgspecDIPlugin

        return [*plugins, MsgspecDIPlugin()]


@get("/api/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app(settings: Settings | None = None, provider: ModelProvider | None = None) -> Litestar:
    """Build the app. Clients are made here, once, not per request (Mangum runs no lifespan)."""
    settings = settings or get_settings()
    handlers: list[ControllerRouterHandler] = [
        healthz,
        ChatController,
        ModelsController,
        RealtimeController,
        FilesController,
        BatchesController,
    ]
    state = {
        "settings": settings,
        # Built at the first request that calls the model (the SDK is a large import).
        "provider": provider or LazyProvider(lambda: build_provider(settings)),
        "verifier": build_verifier(settings),
    }
    if settings.auth_mode == "dev":
        handlers.append(DevTokenController)
        state["dev_tokens"] = dev_tokens(settings)
    return RestApp(
        route_handlers=handlers,
        dependencies=PRINCIPAL_DEPENDENCY,
        guards=[require_valid_path_ids],  # malformed ids: 404 before any store call
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_request_bytes,
        state=State(state),
        openapi_config=None,
        # No logging setup of Litestar's own (a queue listener, logging.config at import):
        # the service's loggers ("rtai.*") propagate to the host's root logger (Lambda's
        # JSON log format, uvicorn's locally).
        logging_config=None,
    )
