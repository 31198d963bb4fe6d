"""The one-port app of ``make dev``.

``/api`` -> the REST app, ``/stream`` -> the stream service, anything else -> web/.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.static_files import create_static_files_router

from core.settings import Settings
from devstack.dispatch import ASGIApp, PrefixDispatcher
from functions.api.app import create_app as create_api_app
from stream_service.app import create_app as create_stream_app

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def create_web_app(web_dir: Path = WEB_DIR) -> Litestar:
    return Litestar(
        route_handlers=[
            create_static_files_router(path="/", directories=[web_dir], html_mode=True)
        ],
        openapi_config=None,
    )


def create_dev_app(settings: Settings) -> ASGIApp:
    return PrefixDispatcher(
        [("/api", create_api_app(settings)), ("/stream", create_stream_app(settings))],
        default=create_web_app(),
    )
