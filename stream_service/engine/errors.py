"""Every error the engine produces, built in one place: the payloads of ``error`` events
and the exceptions its callers turn into HTTP (or WebSocket) errors."""

from __future__ import annotations

from typing import Any

from core.errors import ApiError, InvalidRequest, NotFound, RateLimited, ServiceUnavailable
from core.ids import STREAM_ID
from stream_service.engine.types import ErrorCode

LOST_MESSAGE = (
    "The node producing this stream stopped. The events so far are stored; retry to continue."
)


def error_payload(code: ErrorCode | str, message: str, retryable: bool) -> dict[str, Any]:
    return {"code": str(code), "message": message, "retryable": retryable}


def producer_lost() -> dict[str, Any]:
    return error_payload(ErrorCode.PRODUCER_LOST, LOST_MESSAGE, True)


def upstream_timeout(before_first_token: bool, limit_s: float) -> dict[str, Any]:
    what = "before its first token" if before_first_token else "between two tokens"
    return error_payload(
        ErrorCode.UPSTREAM_TIMEOUT, f"The model sent nothing for {limit_s:.0f} s {what}.", True
    )


def internal_error() -> dict[str, Any]:
    return error_payload(ErrorCode.INTERNAL_ERROR, "The stream failed unexpectedly.", True)


def from_api_error(exc: ApiError) -> dict[str, Any]:
    retryable = bool(getattr(exc, "retryable", exc.status_code >= 500 or exc.status_code == 429))
    return error_payload(exc.code or ErrorCode.UPSTREAM_ERROR, exc.message, retryable)


# --- exceptions --------------------------------------------------------------------------
def not_found(stream_id: str) -> NotFound:
    """Unknown, someone else's or malformed: one answer (ids never leak)."""
    return STREAM_ID.not_found(stream_id)


def beyond(after: int, last: int) -> InvalidRequest:
    return InvalidRequest(
        f"Last-Event-ID {after} is beyond this stream's last event ({last}).",
        code="invalid_last_event_id",
        param="Last-Event-ID",
    )


def draining(what: str = "retry the request") -> ServiceUnavailable:
    return ServiceUnavailable(
        f"This node is draining; {what}.", code="draining", headers={"Retry-After": "1"}
    )


def too_many_streams(active: int, limit: int, retry_after_s: int) -> RateLimited:
    return RateLimited(
        f"You have {active} active streams; the limit is {limit}. "
        "Wait for one to finish, or cancel one.",
        retry_after_s=retry_after_s,
        code="too_many_streams",
    )


def completion_timeout(limit_s: float) -> ApiError:
    return ApiError(
        f"The model did not answer within {limit_s:.0f} s. Long replies should stream: "
        'use POST /stream/v1/chat/completions with "stream": true, or POST /stream/v1/streams.',
        status_code=504,
        type="api_error",
        code="upstream_timeout",
    )


def too_many_readers(scope: str, limit: int) -> RateLimited:
    return RateLimited(
        f"Too many open readers {scope} (the limit is {limit}); close one and retry.",
        retry_after_s=1,
        code="too_many_readers",
    )
