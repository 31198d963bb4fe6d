"""Exception handlers that turn every failure into OpenAI's error shape (never a bare 500)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from core.errors import ApiError, error_body

log = logging.getLogger("rtai.errors")

_TYPES_BY_STATUS = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def _json(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response[Any]:
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=headers)


def api_error_handler(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _json(exc.body(), exc.status_code, exc.headers)


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        detail = exc.detail
        if isinstance(exc.extra, list) and exc.extra:
            detail = f"{detail}: {exc.extra}"
        return _json(
            error_body(f"Invalid request: {detail}", "invalid_request_error", "invalid_value"), 400
        )
    type_, code = _TYPES_BY_STATUS.get(status, ("invalid_request_error", None))
    if status >= 500:
        type_, code = "server_error", None
    return _json(error_body(str(exc.detail), type_, code), status, exc.headers)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = error_body("The server had an error while processing your request.", "server_error")
    return _json(body, HTTP_500_INTERNAL_SERVER_ERROR)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: api_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
