"""SSE responses that no proxy buffers, and the request bits that resume them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.response import Stream

from core.errors import InvalidRequest

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: don't buffer this response
    "Content-Encoding": "identity",
}


def sse_response(body: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> Stream:
    return Stream(
        body,
        media_type="text/event-stream; charset=utf-8",
        headers={**SSE_HEADERS, **(headers or {})},
    )


def last_event_id(request: Request[Any, Any, Any], max_seq: int) -> int:
    """``Last-Event-ID`` header, else ``last_event_id`` query parameter; 0 when absent."""
    raw = request.headers.get("last-event-id")
    if raw is None:
        raw = request.query_params.get("last_event_id")
    if raw is None or raw.strip() == "":
        return 0
    value = raw.strip()
    if not value.isdigit() or len(value) > 12 or int(value) > max_seq:
        raise InvalidRequest(
            f"Last-Event-ID must be a non-negative integer event id; got {value[:40]!r}.",
            code="invalid_last_event_id",
            param="Last-Event-ID",
        )
    return int(value)
