"""Server-sent events: the native format and OpenAI's chunk format, responses no proxy
buffers, and the request bits that resume them."""

from stream_service.transports.sse.formats import NativeSse, OpenAIChunks, SseFormat
from stream_service.transports.sse.request import last_event_id
from stream_service.transports.sse.response import AbortStream, EventStream, sse_body

__all__ = [
    "AbortStream",
    "EventStream",
    "NativeSse",
    "OpenAIChunks",
    "SseFormat",
    "last_event_id",
    "sse_body",
]
