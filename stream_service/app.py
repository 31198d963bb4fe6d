"""The stream service app factory."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.datastructures import State

from core.http.errors import EXCEPTION_HANDLERS
from core.settings import Settings, get_settings


@get("/stream/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    return Litestar(
        route_handlers=[healthz],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State({"settings": settings}),
        openapi_config=None,
    )
