"""The two SSE renderings of stream events.

- native (``/stream/v1/streams/{id}/events``): ``id:``, ``event:`` and ``data:`` lines;
- OpenAI chunks (``/stream/v1/chat/completions``, ``?format=openai``): ``chat.completion.chunk``
  objects with an ``id:`` line, so the ``openai`` SDK can stream them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from core.schemas.chat import Usage, chunk_body
from stream_service.engine.events import (
    DELTA_TEXT,
    TEXT_ONLY_PREFIX,
    Event,
    Format,
    StreamInfo,
    delta_parts,
)

PING = b": ping\n\n"
_json = msgspec.json.Encoder()


def retry_frame(ms: int) -> bytes:
    return b"retry: %d\n\n" % ms


class SseFormat(Format):
    # The openai SDK's SSE parser turns a bare ``retry:`` frame into an empty event and
    # fails on it, and reads a clean end as a complete reply: chunk clients get neither.
    retry_hints: bool = True


class NativeSse(SseFormat):
    slot = 0

    def render(self, event: Event) -> bytes:
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.kind.encode(), event.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NativeSse)

    def __hash__(self) -> int:
        return hash(NativeSse)


NATIVE = NativeSse()


@dataclass(frozen=True, eq=True, slots=True)
class OpenAIChunks(SseFormat):
    info: StreamInfo
    slot = 1
    retry_hints = False

    def _chunk(self, **fields: Any) -> bytes:
        info = self.info
        return _json.encode(
            chunk_body(
                completion_id=info.completion_id, model=info.model, created=info.created_s, **fields
            )
        )

    def render(self, event: Event) -> bytes:
        head = b"id: %d\n" % event.seq
        if event.kind == "delta":
            data = event.data
            if data.startswith(TEXT_ONLY_PREFIX):  # per token: decoded into its struct
                return (
                    head + b"data: " + self._chunk(content=DELTA_TEXT.decode(data).text) + b"\n\n"
                )
            # more than text: the upstream's delta fields verbatim, logprobs on the choice
            text, fields, logprobs = delta_parts(data)
            chunk = self._chunk(content=text or None, fields=fields, logprobs=logprobs)
            return head + b"data: " + chunk + b"\n\n"
        if event.kind == "status":
            return head + b"data: " + self._chunk(role="assistant") + b"\n\n"
        payload = msgspec.json.decode(event.data)
        if event.kind == "done":
            out = head + b"data: " + self._chunk(finish_reason=payload["finish_reason"]) + b"\n\n"
            if self.info.include_usage and payload.get("usage"):
                usage = msgspec.convert(payload["usage"], Usage)
                out += b"data: " + self._chunk(usage=usage, with_choice=False) + b"\n\n"
            return out + b"data: [DONE]\n\n"
        # error: OpenAI streams errors as a data line with an "error" object; the SDK raises
        error = {
            "message": payload["message"],
            "type": "api_error",
            "code": payload["code"],
            "param": None,
        }
        body = _json.encode({"error": error, "retryable": payload["retryable"]})
        return head + b"data: " + body + b"\n\n"


def native(_: StreamInfo) -> Format:
    return NATIVE


def openai_chunks(info: StreamInfo) -> Format:
    return OpenAIChunks(info)
