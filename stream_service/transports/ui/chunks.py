"""Stream events as the AI SDK's UI message stream (``data: <chunk JSON>`` lines).

A reply is one UI message: ``start`` (its ``messageId``, ``messageMetadata.streamId``) and
``start-step``, then its parts (``text-*``, ``reasoning-*``, ``tool-input-*``), then
``finish-step`` and ``finish`` (``abort`` before them when the reply was stopped), or an
``error``; ``data: [DONE]`` closes it.

Some chunks depend on the events before them (``text-start`` before a text part's first
``text-delta``, ``text-end`` when the part stops, ``tool-input-available`` with a call's
whole arguments). So one :class:`UiMessageChunks` reads one stream from its first event,
and folds each event into a small state as it renders it: a frame is a function of the
events up to it, the same on every node and every resume (the AI SDK always resumes from
the first chunk and rebuilds the message). Frames are still rendered once: the first reader
caches each frame on the event (its format slot), the others only advance their state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from stream_service.engine.events import TEXT_ONLY_PREFIX, Event
from stream_service.transports.sse.formats import SseFormat

UI_STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}

DONE_FRAME = b"data: [DONE]\n\n"

# OpenAI's finish_reason -> the AI SDK's finishReason (a stopped reply ends "stop")
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
    "cancelled": "stop",
}

_json = msgspec.json.Encoder()
# A text-only ``delta`` payload is ``{"text":"..."}`` (the engine puts any other field of a
# delta first, so only a text-only payload starts with TEXT_ONLY_PREFIX).
_EMPTY_TEXT = TEXT_ONLY_PREFIX + b'""}'
_TEXT_AT = len(TEXT_ONLY_PREFIX)


class _Function(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class _ToolFragment(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct, gc=False):
    """The parts of a ``delta`` payload this format renders (SPEC 9: ``text`` plus the
    other fields of OpenAI's delta as the upstream sent them)."""

    text: str = ""
    reasoning_content: str | None = None
    reasoning: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolFragment] | None = None


class _TextOnly(msgspec.Struct, gc=False):
    text: str = ""


_decode_delta = msgspec.json.Decoder(_Delta).decode
_decode_text = msgspec.json.Decoder(_TextOnly).decode


def _delta(data: bytes) -> _Delta:
    try:
        return _decode_delta(data)
    except msgspec.ValidationError:  # a vendor field of another shape: its text still shows
        return _Delta(text=_decode_text(data).text)


def _chunk(chunk: dict[str, Any]) -> bytes:
    return b"data: " + _json.encode(chunk) + b"\n\n"


@dataclass(slots=True)
class _Call:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class _Out:
    """Chunks of one frame, or nothing when only the state advances (a cached frame)."""

    __slots__ = ("parts", "render")

    def __init__(self, render: bool) -> None:
        self.render = render
        self.parts: list[bytes] = []

    def add(self, chunk: dict[str, Any]) -> None:
        if self.render:
            self.parts.append(_chunk(chunk))

    def raw(self, frame: bytes) -> None:
        if self.render:
            self.parts.append(frame)

    def frame(self) -> bytes:
        return b"".join(self.parts)


class UiMessageChunks(SseFormat):
    """One reader's rendering of one stream (stateful: never shared between readers)."""

    slot = 3
    # A draining node breaks the connection instead: the AI SDK then sees a network error
    # and may resume (a clean end would read as a finished reply).
    retry_hints = False

    def __init__(self, stream_id: str, message_id: str) -> None:
        self.stream_id = stream_id
        self.message_id = message_id
        self._folded = 0  # seq of the last event folded into the state
        self._last = b""  # ...and its frame
        self._started = False
        self._text: str | None = None  # id of the open text part
        self._reasoning: str | None = None  # id of the open reasoning part
        self._calls: dict[int, _Call] = {}  # tool calls of this step, by index, in order
        self._delta_head = b""  # the open text part's text-delta chunk, up to its delta

    def render(self, event: Event) -> bytes:
        return self.frame(event)

    def frame(self, event: Event) -> bytes:
        seq = event.seq
        if seq <= self._folded:
            if seq == self._folded:  # the producer rendered it for a write that did not go out
                return self._last
            raise ValueError(f"event {seq} is behind this reader ({self._folded})")
        if seq != self._folded + 1:
            raise ValueError(f"a UI message stream is read from its start (got {seq})")
        if self._text is not None and event.kind == "delta":
            data = event.data
            if data.startswith(TEXT_ONLY_PREFIX):  # the per-token path: more text of the open part
                self._folded = seq
                frame = event.f3
                if frame is None:  # the payload's JSON string is the chunk's delta as it is
                    frame = (
                        b""
                        if data == _EMPTY_TEXT
                        else self._delta_head + data[_TEXT_AT:-1] + b"}\n\n"
                    )
                    event.f3 = frame
                self._last = frame
                return frame
        cached = event.f3
        out = _Out(render=cached is None)
        self._fold(event, out)
        self._folded = seq
        if cached is None:
            cached = event.f3 = out.frame()
        self._last = cached
        return cached

    # --- the state machine ------------------------------------------------------------
    def _fold(self, event: Event, out: _Out) -> None:
        kind = event.kind
        if not self._started:
            self._started = True
            out.add(
                {
                    "type": "start",
                    "messageId": self.message_id,
                    "messageMetadata": {"streamId": self.stream_id},
                }
            )
            out.add({"type": "start-step"})
        if kind == "delta":
            self._fold_delta(event, out)
        elif kind == "done":
            payload = msgspec.json.decode(event.data)
            self._close_parts(out)
            reason = str(payload.get("finish_reason") or "stop")
            out.add({"type": "finish-step"})
            if reason == "cancelled":
                out.add({"type": "abort"})
            out.add({"type": "finish", "finishReason": FINISH_REASONS.get(reason, "other")})
            out.raw(DONE_FRAME)
        elif kind == "error":
            payload = msgspec.json.decode(event.data)
            text = f"{payload.get('message') or 'The reply failed.'} ({payload.get('code')})"
            out.add({"type": "error", "errorText": text})
            out.raw(DONE_FRAME)
        # a status (the typing indicator) is the start above, or nothing

    def _fold_delta(self, event: Event, out: _Out) -> None:
        delta = _delta(event.data)
        reasoning = delta.reasoning_content or delta.reasoning
        if reasoning:
            self._end_text(out)
            self._complete_calls(out)
            if self._reasoning is None:
                self._reasoning = f"r{event.seq}"
                out.add({"type": "reasoning-start", "id": self._reasoning})
            out.add({"type": "reasoning-delta", "id": self._reasoning, "delta": reasoning})
        text = delta.text or delta.refusal or ""
        if text:
            self._end_reasoning(out)
            self._complete_calls(out)
            if self._text is None:
                self._text = f"t{event.seq}"
                self._delta_head = b'data: {"type":"text-delta","id":"%s","delta":' % (
                    self._text.encode()
                )
                out.add({"type": "text-start", "id": self._text})
            out.raw(self._delta_head + _json.encode(text) + b"}\n\n")
        if delta.tool_calls:
            self._end_text(out)
            self._end_reasoning(out)
            for fragment in delta.tool_calls:
                self._fold_fragment(fragment, out)

    def _fold_fragment(self, fragment: _ToolFragment, out: _Out) -> None:
        call = self._calls.get(fragment.index)
        function = fragment.function
        if call is None:
            call = _Call(
                id=fragment.id or f"call_{self.stream_id[:12]}_{fragment.index}",
                name=(function.name if function else None) or "",
            )
            self._calls[fragment.index] = call
            out.add({"type": "tool-input-start", "toolCallId": call.id, "toolName": call.name})
        if function is not None and function.arguments:
            call.arguments.append(function.arguments)
            out.add(
                {
                    "type": "tool-input-delta",
                    "toolCallId": call.id,
                    "inputTextDelta": function.arguments,
                }
            )

    def _end_text(self, out: _Out) -> None:
        if self._text is not None:
            out.add({"type": "text-end", "id": self._text})
            self._text = None

    def _end_reasoning(self, out: _Out) -> None:
        if self._reasoning is not None:
            out.add({"type": "reasoning-end", "id": self._reasoning})
            self._reasoning = None

    def _complete_calls(self, out: _Out) -> None:
        """The step's tool calls are complete: their whole input, parsed (or why not)."""
        for call in self._calls.values():
            raw = "".join(call.arguments)
            try:
                value = msgspec.json.decode(raw) if raw.strip() else {}
            except msgspec.DecodeError as exc:
                out.add(
                    {
                        "type": "tool-input-error",
                        "toolCallId": call.id,
                        "toolName": call.name,
                        "input": raw,
                        "errorText": f"The tool call's arguments are not valid JSON: {exc}",
                    }
                )
                continue
            out.add(
                {
                    "type": "tool-input-available",
                    "toolCallId": call.id,
                    "toolName": call.name,
                    "input": value,
                }
            )
        self._calls.clear()

    def _close_parts(self, out: _Out) -> None:
        self._end_text(out)
        self._end_reasoning(out)
        self._complete_calls(out)
