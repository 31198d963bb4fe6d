"""The request bits that resume an SSE stream."""

from __future__ import annotations

from typing import Any

from litestar import Request

from core.errors import InvalidRequest


def last_event_id(request: Request[Any, Any, Any], max_seq: int) -> int:
    """``Last-Event-ID`` header, else ``last_event_id`` query parameter; 0 when absent."""
    raw = request.headers.get("last-event-id")
    if raw is None:
        raw = request.query_params.get("last_event_id")
    if raw is None or raw.strip() == "":
        return 0
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) > max_seq:
        raise InvalidRequest(
            f"Last-Event-ID must be a non-negative integer event id; got {value[:40]!r}.",
            code="invalid_last_event_id",
            param="Last-Event-ID",
        )
    return int(value)
