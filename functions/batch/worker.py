"""Runs one queue message: a chunk of lines against the model provider, or a finalize.

Each line is written once (conditional on its line number), so a redelivered message, or
a worker that died between writing results and deleting its message, skips the lines
already done and adds no duplicate. Upstream calls share one semaphore per process
(``BATCH_CONCURRENCY``) and are retried with exponential backoff and full jitter on 429
(honouring Retry-After) and retryable 5xx, up to ``BATCH_MAX_ATTEMPTS``; a line that
keeps failing is written as failed and lands in the error file. Every call is bounded by
``OPENAI_TIMEOUT_S`` (a timeout is a retryable upstream error), and no call or retry starts
that could outlive the invocation (:mod:`functions.batch.budget`): such a chunk is handed
back (:class:`~functions.batch.budget.OutOfTime`) with the lines done so far saved.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from core.errors import ApiError, InvalidRequest, RateLimited, UpstreamError
from core.providers import ModelProvider
from core.providers.base import Completion
from core.schemas.chat import parse_chat_request
from core.settings import Settings
from functions.batch.budget import Budget
from functions.batch.finalizer import Finalizer
from functions.batch.queue import decode_message
from functions.batch.schemas import (
    RUNNABLE,
    BatchRecord,
    ChunkMessage,
    FinalizeMessage,
    ItemResult,
    now_s,
)
from functions.batch.store.base import BatchStore
from functions.batch.validation import RawLine, iter_lines, parse_line

log = logging.getLogger("rtai.batch.worker")
T = TypeVar("T")


@dataclass
class WorkerStats:
    """Counters a caller may publish as metrics."""

    lines_succeeded: int = 0
    lines_failed: int = 0
    lines_skipped: int = 0
    duplicates: int = 0
    upstream_retries: int = 0
    handed_back: int = 0  # messages that ran out of invocation time (batchItemFailures)
    finalized: list[str] = field(default_factory=list)


def retry_after_s(exc: RateLimited) -> float:
    try:
        return float(exc.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0


class BatchWorker:
    """One per process. Its coroutines run on the caller's event loop."""

    def __init__(
        self,
        settings: Settings,
        store: BatchStore,
        provider: ModelProvider,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.provider = provider
        self.finalizer = Finalizer(settings, store)
        self.stats = WorkerStats()
        self._sleep = sleep
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def semaphore(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.settings.batch_concurrency)
        return self._semaphore

    def unbounded(self) -> Budget:
        return Budget.unbounded(self.settings.openai_timeout_s)

    async def handle_body(self, body: str | bytes, budget: Budget | None = None) -> None:
        """Run one SQS message body. Raises to have the message retried (or dead-lettered);
        :class:`~functions.batch.budget.OutOfTime` when ``budget`` ran out first."""
        message = decode_message(body)
        if isinstance(message, FinalizeMessage):
            await self._finalize(message.batch_id)
        else:
            await self.run_chunk(message, budget or self.unbounded())

    async def _finalize(self, batch_id: str, chunks_done: int = 0) -> None:
        ended = await asyncio.to_thread(self.finalizer.finalize, batch_id, chunks_done)
        if ended is not None:
            self.stats.finalized.append(ended.id)

    async def run_chunk(self, message: ChunkMessage, budget: Budget | None = None) -> None:
        budget = budget or self.unbounded()
        budget.require()  # not even one call fits: hand it back untouched
        batch = await asyncio.to_thread(self.store.get_batch, message.batch_id)
        if batch is None:
            log.warning("dropping a chunk of unknown batch %s", message.batch_id)
            return
        if batch.finalize_token is None and batch.status in RUNNABLE and now_s() < batch.deadline:
            gate = _Gate(self.store, batch, self.settings.batch_status_check_s)
            done = await asyncio.to_thread(
                self.store.done_lines, batch.id, message.first_line, message.last_line
            )
            self.stats.duplicates += len(done)
            data = await asyncio.to_thread(
                self.store.read_range,
                batch.input_key,
                message.byte_start,
                message.byte_end,
                batch.input_etag,
            )
            lines = [
                raw
                for raw in iter_lines([data], message.byte_start, message.first_line)
                if raw.data.strip() and raw.number not in done
            ]
            outcomes = await asyncio.gather(
                *(self._run_line(batch, raw, gate, budget) for raw in lines),
                return_exceptions=True,
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if errors:  # results so far are saved; the retry skips them
                raise errors[0]
        chunks_done = await asyncio.to_thread(self.store.mark_chunk_done, batch.id, message.chunk)
        await self._finalize(batch.id, chunks_done)

    async def _run_line(
        self, batch: BatchRecord, raw: RawLine, gate: _Gate, budget: Budget
    ) -> None:
        try:
            await self._execute_line(batch, raw, gate, budget)
        except _Skipped:
            self.stats.lines_skipped += 1

    async def _execute_line(
        self, batch: BatchRecord, raw: RawLine, gate: _Gate, budget: Budget
    ) -> None:
        started = False
        request_id = f"req_{uuid.uuid4().hex}"
        request = parse_line(raw)
        custom_id = str(request.custom_id)
        try:
            chat = parse_chat_request(bytes(request.body), self.settings)
            if chat.stream:
                raise InvalidRequest(
                    "'stream' is not supported in a batch.", param="stream", code="invalid_value"
                )

            async def call() -> Completion:
                nonlocal started
                if not started:  # checked once a slot is free: a cancel stops queued lines
                    if not await gate.open():
                        raise _Skipped
                    started = True
                await self.provider.check(chat)
                return await self.provider.complete(chat)

            result = await self.with_retries(call, budget)
        except ApiError as exc:
            if not started and not await gate.open():
                raise _Skipped from exc
            item = ItemResult(raw.number, custom_id, False, exc.status_code, exc.body(), request_id)
        else:
            body = result.body(chat.model)
            item = ItemResult(
                raw.number,
                custom_id,
                True,
                200,
                body,
                request_id,
                input_tokens=result.usage.prompt_tokens,
                output_tokens=result.usage.completion_tokens,
            )
        written = await asyncio.to_thread(self.store.record_result, batch.id, item)
        if not written:
            self.stats.duplicates += 1
        elif item.succeeded:
            self.stats.lines_succeeded += 1
        else:
            self.stats.lines_failed += 1

    async def with_retries(
        self, call: Callable[[], Awaitable[T]], budget: Budget | None = None
    ) -> T:
        """Bounded concurrency, exponential backoff with full jitter, Retry-After honoured;
        each attempt bounded by ``OPENAI_TIMEOUT_S`` and started only within ``budget``."""
        budget = budget or self.unbounded()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.semaphore:
                    budget.require()  # checked once a slot is free: waiting took time
                    return await self._bounded(call, budget.call_timeout_s)
            except RateLimited as exc:
                if attempt >= self.settings.batch_max_attempts:
                    raise
                delay = max(self.backoff(attempt), retry_after_s(exc))
            except UpstreamError as exc:
                if not exc.retryable or attempt >= self.settings.batch_max_attempts:
                    raise
                delay = self.backoff(attempt)
            delay = min(delay, self.settings.batch_backoff_max_s)
            budget.require(after_s=delay)
            self.stats.upstream_retries += 1
            await self._sleep(delay)

    @staticmethod
    async def _bounded(call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                return await call()
        except TimeoutError as exc:
            raise UpstreamError(
                f"The model provider did not answer within {timeout_s:g} s (OPENAI_TIMEOUT_S).",
                status_code=504,
                retryable=True,
            ) from exc

    def backoff(self, attempt: int) -> float:
        cap = self.settings.batch_backoff_max_s
        return random.uniform(0, min(cap, self.settings.batch_backoff_base_s * 2 ** (attempt - 1)))


class _Skipped(Exception):
    """The line was not started: the batch was cancelled, expired or is finalizing."""


class _Gate:
    """Says whether new lines may start: the batch is running and before its deadline.

    The batch's status is re-read at most every ``BATCH_STATUS_CHECK_S``, so a cancel stops
    new work within that time (lines already running finish).
    """

    def __init__(self, store: BatchStore, batch: BatchRecord, every_s: float) -> None:
        self.store = store
        self.batch = batch
        self.every_s = every_s
        self.checked = time.monotonic()
        self._lock = asyncio.Lock()

    async def open(self) -> bool:
        async with self._lock:
            if time.monotonic() - self.checked >= self.every_s:
                fresh = await asyncio.to_thread(self.store.get_batch, self.batch.id)
                self.checked = time.monotonic()
                if fresh is not None:
                    self.batch = fresh
        b = self.batch
        return b.status in RUNNABLE and b.finalize_token is None and now_s() < b.deadline
