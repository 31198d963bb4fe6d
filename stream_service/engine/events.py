"""Stream events and their SSE frames, each encoded once and shared by every consumer.

Two wire formats render the same events:
- native (``/stream/v1/streams/{id}/events``): ``id:``, ``event:`` and ``data:`` lines;
- ``openai``: ``chat.completion.chunk`` objects, so the ``openai`` SDK can stream them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from core.schemas.chat import chunk_body
from stream_service.store.base import StoredEvent

TERMINAL = frozenset({"done", "error"})
PING = b": ping\n\n"

_json = msgspec.json.Encoder()
_decode = msgspec.json.decode


class _Delta(msgspec.Struct, gc=False):
    text: str


_delta = msgspec.json.Decoder(_Delta)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What the openai format needs to know about a stream."""

    completion_id: str
    model: str
    created_s: int
    include_usage: bool


class Event(msgspec.Struct, gc=False):
    """One event of a stream, with its wire frames rendered at most once.

    Live streams keep thousands of these in memory; ``gc=False`` keeps them out of the
    garbage collector's sight (they hold only ints, strings and bytes), so full collections
    don't grow with the number of buffered events.
    """

    seq: int
    kind: str
    data: bytes
    native: bytes | None = None  # the native SSE frame, once rendered
    chunk: bytes | None = None  # the openai-format frame, once rendered

    @classmethod
    def make(cls, seq: int, kind: str, payload: Any) -> Event:
        return cls(seq, kind, _json.encode(payload))

    @classmethod
    def delta(cls, seq: int, text: str) -> Event:
        return cls(seq, "delta", _json.encode(_Delta(text)))

    @classmethod
    def from_stored(cls, stored: StoredEvent) -> Event:
        return cls(*stored)

    def stored(self) -> StoredEvent:
        return (self.seq, self.kind, self.data)

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL

    def frame(self) -> bytes:
        if self.native is None:
            self.native = b"id: %d\nevent: %s\ndata: %s\n\n" % (
                self.seq,
                self.kind.encode(),
                self.data,
            )
        return self.native

    def openai_frame(self, info: StreamInfo) -> bytes:
        if self.chunk is None:
            self.chunk = _render_openai(self, info)
        return self.chunk

    def render(self, info: StreamInfo | None) -> bytes:
        return self.frame() if info is None else self.openai_frame(info)


def _render_openai(event: Event, info: StreamInfo) -> bytes:
    def chunk(**fields: Any) -> bytes:
        return _json.encode(
            chunk_body(
                completion_id=info.completion_id, model=info.model, created=info.created_s, **fields
            )
        )

    head = b"id: %d\n" % event.seq
    if event.kind == "delta":  # per token: decoded into its struct, not a dict
        return head + b"data: " + chunk(content=_delta.decode(event.data).text) + b"\n\n"
    if event.kind == "status":
        return head + b"data: " + chunk(role="assistant", content="") + b"\n\n"
    payload = _decode(event.data)
    if event.kind == "done":
        out = head + b"data: " + chunk(finish_reason=payload["finish_reason"]) + b"\n\n"
        if info.include_usage and payload.get("usage"):
            from core.schemas.chat import Usage

            usage = msgspec.convert(payload["usage"], Usage)
            out += b"data: " + chunk(usage=usage, with_choice=False) + b"\n\n"
        return out + b"data: [DONE]\n\n"
    # error: OpenAI streams errors as a data line with an "error" object; the SDK raises on it
    error = {
        "message": payload["message"],
        "type": "api_error",
        "code": payload["code"],
        "param": None,
    }
    return (
        head
        + b"data: "
        + _json.encode({"error": error, "retryable": payload["retryable"]})
        + b"\n\n"
    )


def retry_frame(ms: int) -> bytes:
    return b"retry: %d\n\n" % ms
