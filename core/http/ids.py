"""A Litestar guard that checks every id in the path before the handler runs."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from core.ids import PATH_IDS, IdFormat


async def require_valid_path_ids(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """404 (OpenAI's shape) for a malformed ``stream_id`` / ``file_id`` / ``batch_id``.

    Register once per app (``Litestar(guards=[require_valid_path_ids])``) or per
    controller: no handler, dependency or store call sees a malformed id.
    """
    for name, value in connection.path_params.items():
        fmt: IdFormat | None = PATH_IDS.get(name)
        if fmt is not None and not fmt.is_valid(value):
            raise fmt.not_found(str(value))
