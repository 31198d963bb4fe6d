"""The producer: runs one stream's upstream call into its :class:`~.live.LiveStream`.

It numbers events 1, 2, 3, ...: ``status`` ``thinking`` at once, a ``delta`` per token (the
per-token path, kept lean on purpose), and exactly one terminal event: ``done`` (finished,
or ``cancelled`` when stopped for a client, for lack of readers or by the per-user limit) or
``error`` (timeouts, drain deadline, upstream errors). A producer stopped because another
node declared its stream lost appends nothing more: the store has the stream's story.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from core.errors import ApiError
from core.providers import Finish, ModelProvider, RichDelta, TokenDelta
from core.schemas.chat import ChatCompletionRequest
from stream_service.engine import errors
from stream_service.engine.delta_split import split_delta
from stream_service.engine.events import MAX_DELTA_BYTES, SAFE_TEXT_CHARS, Event
from stream_service.engine.live import LiveStream
from stream_service.engine.types import EventKind, StopReason, StreamStatus
from stream_service.engine.watchdog import Limits
from stream_service.metrics import StreamMetrics

log = logging.getLogger("rtai.stream.producer")


class Producer:
    def __init__(
        self,
        provider: ModelProvider,
        metrics: StreamMetrics,
        limits: Limits,
        *,
        flush_at: int,
        flush_soon: Callable[[LiveStream], None],
        on_end: Callable[[LiveStream], Awaitable[None]],
        before_end: Callable[[LiveStream], Awaitable[None]] | None = None,
    ) -> None:
        self.provider = provider
        self.metrics = metrics
        self.limits = limits
        self.flush_at = flush_at
        self._flush_soon = flush_soon
        self._on_end = on_end
        # runs once the upstream call is over, before the terminal event goes out (the
        # per-user slot is given back then: a client that sees `done` may start another)
        self._before_end = before_end

    def start(self, stream: LiveStream, request: ChatCompletionRequest) -> None:
        stream.task = asyncio.create_task(self.run(stream, request), name=f"produce-{stream.id}")

    @staticmethod
    def stop(stream: LiveStream, reason: StopReason) -> bool:
        """Stop the upstream call now (from any task); False if it is already ending."""
        if stream.finished or stream.stop_reason is not None:
            return False
        if stream.task is None or stream.task.done():
            return False
        stream.stop_reason = reason
        stream.task.cancel()
        return True

    async def run(self, stream: LiveStream, request: ChatCompletionRequest) -> None:
        timings = stream.timings
        on_text, on_rich = self._deltas(stream)
        # A provider that can pushes text deltas to on_text as they arrive (from its
        # socket's callback); it yields everything else, and every delta otherwise.
        upstream = self.provider.stream(request, on_text)
        del request  # held by the provider until it is sent, not for the whole reply
        try:
            stream.append(EventKind.STATUS, {"state": "thinking"})
            timings.upstream_sent = time.perf_counter()
            finish: Finish | None = None
            async for item in upstream:
                if isinstance(item, Finish):
                    finish = item
                elif isinstance(item, TokenDelta):
                    on_text(item.text)
                else:
                    on_rich(item)
            if finish is not None and finish.usage.completion_tokens > 0:
                timings.tokens = finish.usage.completion_tokens  # as the upstream counts
            self._end(stream, StreamStatus.COMPLETED, EventKind.DONE, self._done(stream, finish))
        except asyncio.CancelledError:
            if stream.stop_reason is None:  # not ours: the process is going down
                stream.stop_reason = StopReason.DRAIN_DEADLINE
            self._stopped(stream, stream.stop_reason)
        except ApiError as exc:
            self._end(stream, StreamStatus.FAILED, EventKind.ERROR, errors.from_api_error(exc))
        except Exception:
            log.exception("producer %s failed", stream.id)
            self._end(stream, StreamStatus.FAILED, EventKind.ERROR, errors.internal_error())
        finally:
            with contextlib.suppress(Exception):
                await upstream.aclose()  # type: ignore[attr-defined]
            if self._before_end is not None:
                try:
                    await asyncio.shield(self._before_end(stream))
                except BaseException:  # cancelled meanwhile (shutdown): the ending still goes out
                    log.warning("before-end of %s did not finish", stream.id, exc_info=True)
            if stream.ending is not None:
                stream.append(*stream.ending)
                stream.ending = None
            stream.finished = True
            stream.wake()
            await asyncio.shield(self._on_end(stream))

    def _deltas(
        self, stream: LiveStream
    ) -> tuple[Callable[[str], None], Callable[[RichDelta], None]]:
        """What takes ``stream``'s deltas as they arrive: text (the per-token path, kept lean
        on purpose: no dict, no task switch) and deltas that carry more."""
        timings = stream.timings
        observe_gap = self.metrics.inter_token.observe
        clock = time.perf_counter
        safe_chars = SAFE_TEXT_CHARS
        flush_at = self.flush_at
        flush_soon = self._flush_soon

        def arrived() -> None:
            now = clock()
            if timings.last_token is None:
                timings.first_token = now
            else:
                observe_gap(now - timings.last_token)
            timings.last_token = now
            timings.tokens += 1

        def on_text(text: str) -> None:
            if stream.stop_reason is not None:
                return  # stopped (the task is being cancelled): nobody wants the rest
            arrived()
            if len(text) <= safe_chars:
                seq = stream.append_delta(text)
            else:
                seq = _append_delta(stream, TokenDelta(text))
            if seq - stream.flushed_seq >= flush_at:
                flush_soon(stream)

        def on_rich(item: RichDelta) -> None:
            if stream.stop_reason is not None:
                return
            arrived()
            if _append_delta(stream, item) - stream.flushed_seq >= flush_at:
                flush_soon(stream)

        return on_text, on_rich

    def _stopped(self, stream: LiveStream, reason: StopReason) -> None:
        if reason is StopReason.LEASE_LOST:
            stream.lease_lost = True
            stream.status = StreamStatus.FAILED
            return
        if reason.cancels:
            payload = self._done(stream, None, "cancelled")
            self._end(stream, StreamStatus.CANCELLED, EventKind.DONE, payload)
        elif reason is StopReason.DRAIN_DEADLINE:
            self._end(stream, StreamStatus.FAILED, EventKind.ERROR, errors.producer_lost())
        else:
            first = reason is StopReason.FIRST_TOKEN_TIMEOUT
            limit = self.limits.first_token_s if first else self.limits.idle_s
            payload = errors.upstream_timeout(first, limit)
            self._end(stream, StreamStatus.FAILED, EventKind.ERROR, payload)

    @staticmethod
    def _end(stream: LiveStream, status: StreamStatus, kind: EventKind, payload: Any) -> None:
        """The stream's ending: appended once the upstream call is closed (see ``run``)."""
        stream.status = status
        stream.ending = (kind, payload)

    @staticmethod
    def _done(
        stream: LiveStream, finish: Finish | None, reason: str | None = None
    ) -> dict[str, Any]:
        t = stream.timings
        end = time.perf_counter()
        usage = msgspec.to_builtins(finish.usage) if finish else None
        return {
            "finish_reason": reason or (finish.reason if finish else "stop"),
            "usage": usage,
            "metrics": {
                "ttft_ms": round((t.first_token - t.accepted) * 1000, 1) if t.first_token else None,
                "duration_ms": round((end - t.accepted) * 1000, 1),
                "tokens": t.tokens,
            },
        }


def _append_delta(stream: LiveStream, item: TokenDelta | RichDelta) -> int:
    """A delta off the text fast path: one with more than text, or a long one. A payload
    over MAX_DELTA_BYTES is cut into several events (see :mod:`.delta_split`). The seq of
    the last event appended."""
    if isinstance(item, TokenDelta):
        text, fields, logprobs = item.text, None, None
    else:
        text, fields, logprobs = item
    seq = stream.base + len(stream.events)
    event = (
        Event.rich_delta(seq, text, fields or {}, logprobs)
        if fields or logprobs is not None
        else Event.delta(seq, text)
    )
    if len(event.data) <= MAX_DELTA_BYTES:
        return stream.push_delta(event)
    whole: dict[str, Any] = {"text": text} if text else {}
    whole.update((k, v) for k, v in (fields or {}).items() if k != "text")
    if logprobs is not None:
        whole["logprobs"] = logprobs
    for piece in split_delta(whole, MAX_DELTA_BYTES - 64):
        piece_text = piece.pop("text", "")
        piece_logprobs = piece.pop("logprobs", None)
        if piece or piece_logprobs is not None:
            seq = stream.append_rich_delta(piece_text, piece, piece_logprobs)
        else:
            seq = stream.append_delta(piece_text)
    return seq
