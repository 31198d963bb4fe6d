"""An OpenAI-compatible upstream's streamed reply, decoded: ``chat.completion.chunk`` SSE
lines into the provider's events.

A :class:`ChunkReader` is fed the body's bytes as they come and calls ``on_text`` for a
text-only delta (the per-token path: one msgspec decode into a small struct, no dict) and
``on_event`` for anything else. A pulled body is fed from an ``async for``; a pushed one
(:class:`Pushed`) from the socket's callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from core import json_input
from core.errors import UpstreamError
from core.providers.base import RichDelta, TokenDelta, UpstreamEvent
from core.schemas.chat import Usage

MAX_LINE_BYTES = 1 << 20


# gc=False: decoded per token and dropped at once; they never hold reference cycles.
# A delta decodes into this struct when it has no field but these (most tokens); any other
# field fails the decode (forbid_unknown_fields) and the chunk is decoded whole instead.
class _Delta(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    content: str | None = None
    role: str | None = None
    # fields that are null on a text token; when set, the delta is a RichDelta
    refusal: Any = None
    tool_calls: Any = None
    function_call: Any = None
    reasoning_content: Any = None
    reasoning: Any = None
    audio: Any = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    finish_reason: str | None = None
    logprobs: Any = None


class ReportedUsage(msgspec.Struct, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: ReportedUsage | None = None
    error: dict[str, Any] | None = None


class _AnyChoice(msgspec.Struct, gc=False):
    delta: dict[str, Any] = msgspec.field(default_factory=dict)
    finish_reason: str | None = None
    logprobs: Any = None


class _AnyChunk(msgspec.Struct, gc=False):
    choices: list[_AnyChoice] = msgspec.field(default_factory=list)
    usage: ReportedUsage | None = None
    error: dict[str, Any] | None = None


_DELTA_OWN = ("role", "content")


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_any_chunk_decoder = msgspec.json.Decoder(_AnyChunk)


def _decode_any_chunk(data: bytes) -> tuple[list[UpstreamEvent], str | None, ReportedUsage | None]:
    """A chunk whose delta carries more than text: every field as the upstream sent it
    (fields sent as null carry nothing and are left out)."""
    chunk = json_input.decode(data, decoder=_any_chunk_decoder)
    if chunk.error is not None:
        raise UpstreamError(f"Upstream model error: {chunk.error.get('message')}")
    out: list[UpstreamEvent] = []
    reason = None
    for choice in chunk.choices:
        raw = choice.delta
        content = raw.get("content")
        text = content if isinstance(content, str) else ""
        fields = {k: v for k, v in raw.items() if k not in _DELTA_OWN and v is not None and v != []}
        if fields or choice.logprobs is not None:
            out.append(RichDelta(text, fields, choice.logprobs))
        elif text:
            out.append(TokenDelta(text))
        if choice.finish_reason:
            reason = choice.finish_reason
    return out, reason, chunk.usage


def decode_usage(raw: ReportedUsage) -> Usage:
    return Usage(
        raw.prompt_tokens,
        raw.completion_tokens,
        raw.total_tokens,
        raw.prompt_tokens_details,
        raw.completion_tokens_details,
    )


def _ignore_text(text: str) -> None:
    """Until the reader is given its consumers."""


def _ignore_event(event: UpstreamEvent) -> None:
    """Until the reader is given its consumers."""


class ChunkReader:
    """Decodes an SSE body fed in pieces of any size: ``on_text(text)`` per text-only delta,
    ``on_event(event)`` per delta that carries more; the finish reason and usage as the
    upstream reported them; ``done`` once ``data: [DONE]`` came (later bytes are ignored)."""

    __slots__ = ("_buffer", "done", "on_event", "on_text", "reason", "usage")

    def __init__(self) -> None:
        self._buffer = b""
        self.on_text: Callable[[str], None] = _ignore_text
        self.on_event: Callable[[UpstreamEvent], None] = _ignore_event
        self.reason = "stop"
        self.usage = Usage(0, 0, 0)
        self.done = False

    def feed(self, raw: bytes) -> None:
        if self.done:
            return
        buffer = self._buffer
        lines = (buffer + raw).split(b"\n") if buffer else raw.split(b"\n")
        self._buffer = lines.pop()  # an unfinished line waits for the next piece
        if len(self._buffer) > MAX_LINE_BYTES:
            raise UpstreamError("Upstream sent an SSE line over 1 MiB.")
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, event/id fields
            data = line[5:].strip()
            if data == b"[DONE]":
                self.done = True
                return
            try:
                chunk = _chunk_decoder.decode(data)
            except msgspec.ValidationError:
                chunk = None  # a delta field beyond the usual ones
            # the per-token path: text only, no dict (n=1: one choice at most)
            if chunk is not None and chunk.error is None and chunk.choices:
                choice = chunk.choices[0]
                delta = choice.delta
                if (
                    choice.logprobs is None
                    and delta.tool_calls is None
                    and delta.refusal is None
                    and delta.reasoning_content is None
                    and delta.reasoning is None
                    and delta.audio is None
                    and delta.function_call is None
                    and len(chunk.choices) == 1
                ):
                    if delta.content:
                        self.on_text(delta.content)
                    if choice.finish_reason:
                        self.reason = choice.finish_reason
                else:
                    chunk = None  # more than text
            if chunk is not None and chunk.error is None:
                reported = chunk.usage
            else:  # more than text (or an error): decoded whole
                events, finished, reported = _decode_any_chunk(data)
                for event in events:
                    self.on_event(event)
                if finished:
                    self.reason = finished
            if reported is not None:
                self.usage = decode_usage(reported)


class Pushed:
    """A :class:`ChunkReader` fed from a pushed body (``data`` and ``end`` are the body's
    callbacks): text deltas go straight to the consumer's ``on_text``; anything else is
    queued, and so is every text delta after it until the queue is read (``events``), so
    the consumer sees every delta in the upstream's order."""

    __slots__ = ("_direct", "_ended", "_error", "_queue", "_reader", "_waiter")

    def __init__(self, reader: ChunkReader, on_text: Callable[[str], None]) -> None:
        self._reader = reader
        self._direct = on_text
        self._queue: list[UpstreamEvent] = []  # a list, not a deque: 56 bytes idle, not 760
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        reader.on_text = on_text
        reader.on_event = self._queue_event

    def data(self, raw: bytes) -> None:
        self._reader.feed(raw)
        if self._reader.done:
            self._wake()

    def end(self, error: BaseException | None) -> None:
        self._ended = True
        self._error = error
        self._wake()

    async def events(self) -> AsyncIterator[UpstreamEvent]:
        """Whatever was queued, in order, until the body ends (raises if it broke off)."""
        reader = self._reader
        while True:
            while self._queue:
                batch, self._queue = self._queue, []
                for event in batch:
                    yield event
            reader.on_text = self._direct  # nothing waits: text goes straight through again
            if reader.done:
                return
            if self._ended:
                if self._error is not None:
                    raise self._error
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _queue_event(self, event: UpstreamEvent) -> None:
        self._queue.append(event)
        self._reader.on_text = self._queue_text
        self._wake()

    def _queue_text(self, text: str) -> None:
        self._queue.append(TokenDelta(text))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
