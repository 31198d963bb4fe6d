"""A request's own grace window (SPEC section 11).

``RESUME_GRACE_S`` is how long generation goes on with no reader anywhere before the
upstream call is cancelled. A request may lower it, never raise it: the chat request's
``stream_options.resume_grace_s`` or the header ``X-Resume-Grace-S`` (both: the lower
one), from 0 (cancel as soon as the last reader leaves) to the configured value. Anything
else is a 400 that names where it came from.
"""

from __future__ import annotations

import math

from core.errors import InvalidRequest
from core.schemas.chat import ChatCompletionRequest

HEADER = "X-Resume-Grace-S"
OPTION = "stream_options.resume_grace_s"


def requested_grace(
    request: ChatCompletionRequest, header: str | None, configured_s: float
) -> float | None:
    """The grace this request asks for (None: the configured one)."""
    asked: list[float] = []
    options = request.stream_options
    if options is not None and options.resume_grace_s is not None:
        asked.append(_checked(float(options.resume_grace_s), OPTION, configured_s))
    if header is not None:
        try:
            value = float(header.strip())
        except ValueError:
            raise _invalid(HEADER, configured_s) from None
        asked.append(_checked(value, HEADER, configured_s))
    return min(asked) if asked else None


def _checked(value: float, param: str, configured_s: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= configured_s:
        raise _invalid(param, configured_s)
    return value


def _invalid(param: str, configured_s: float) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}' must be a number of seconds from 0 to {configured_s:g} (RESUME_GRACE_S).",
        code="invalid_value",
        param=param,
    )
