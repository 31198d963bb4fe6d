"""Errors in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error a client should see, with OpenAI's status code, type and code."""

    status_code: int = 400
    type: str = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if type is not None:
            self.type = type
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


class InvalidRequest(ApiError):
    status_code = 400
    code = "invalid_request"


class Unauthorized(ApiError):
    status_code = 401
    code = "invalid_api_key"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "request_too_large"


class RateLimited(ApiError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"Retry-After": str(max(1, retry_after_s))})


class UpstreamError(ApiError):
    """The model provider failed; ``retryable`` says whether trying again may help."""

    status_code = 502
    type = "api_error"
    code = "upstream_error"

    def __init__(self, message: str, *, status_code: int = 502, retryable: bool = True) -> None:
        super().__init__(message, status_code=status_code)
        self.retryable = retryable


class ServiceUnavailable(ApiError):
    status_code = 503
    type = "api_error"
    code = "unavailable"


STREAM_ENDPOINT = "/stream/v1/chat/completions"


class CompletionTimedOut(ApiError):
    """A non-streaming completion outlived its path's budget. Not retried by the SDK
    (``x-should-retry: false``): the same request would only time out again, and each try
    makes the upstream generate (and bill) once more."""

    status_code = 504
    type = "timeout_error"
    code = "completion_timeout"

    def __init__(self, budget_s: float) -> None:
        super().__init__(
            f"The completion did not finish within {budget_s:g} s, the limit of this endpoint."
            f' Stream it instead: POST {STREAM_ENDPOINT} with "stream": true (same request'
            " body); a stream has no such limit.",
            headers={"x-should-retry": "false"},
        )
