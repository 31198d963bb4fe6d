"""The stream engine: creates streams, runs their producers, serves readers, drains.

One producer task per stream reads the upstream, numbers events 1, 2, 3, ... and appends
them to its :class:`LiveStream`; local readers are woken from memory at once. Background
loops batch events into the store (``FLUSH_INTERVAL_MS``), keep producer leases alive,
poll cross-node facts (cancel flags, remote readers) and cancel the upstream when nobody
has read the stream for ``RESUME_GRACE_S``. Readers on other nodes tail the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import msgspec

from core.errors import ApiError, RateLimited, ServiceUnavailable
from core.providers import Finish, TokenDelta
from core.schemas.chat import ChatCompletionRequest, new_completion_id
from stream_service.engine.base import LOST_MESSAGE, log, not_found
from stream_service.engine.events import StreamInfo
from stream_service.engine.live import LiveStream, Timings
from stream_service.engine.readers import Readers
from stream_service.engine.upkeep import Upkeep
from stream_service.store import LeaseLost, StreamMeta
from stream_service.store.base import now_ms

_json_line = msgspec.json.Encoder()


class StreamEngine(Readers, Upkeep):
    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._flush_loop(), name="flush"),
            asyncio.create_task(self._poll_loop(), name="poll"),
            asyncio.create_task(self._reader_heartbeat_loop(), name="reader-heartbeat"),
            asyncio.create_task(self._keepalive_loop(), name="keepalive"),
            *(
                asyncio.create_task(self._flush_worker(), name=f"flush-{n}")
                for n in range(self.config.flush_concurrency)
            ),
        ]

    async def stop(self) -> None:
        """Shut down: anything still running ends as in a drain that ran out of time."""
        if not self.draining:
            await self.drain(timeout=min(5.0, self.config.drain_s))
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.provider.aclose()  # its connection pool

    async def drain(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """SIGTERM: refuse new streams, ask clients to reconnect elsewhere, let producers finish."""
        self.draining = True
        for stream in list(self.live.values()):
            stream.wake()
        deadline = time.monotonic() + (timeout if timeout is not None else self.config.drain_s)
        running = [s.task for s in self.live.values() if s.task and not s.task.done()]
        if running:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic() - 1.0))
        for stream in self.live.values():
            if stream.task and not stream.task.done():
                self._cancel_local(stream, "drain_deadline")
        running = [s.task for s in self.live.values() if s.task and not s.task.done()]
        if running:
            await asyncio.wait(running, timeout=max(0.5, deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush_queue.join(), timeout=1.0)

    # --- creating and cancelling ---------------------------------------------------------
    async def create(
        self, owner: str, request: ChatCompletionRequest, accepted_at: float
    ) -> LiveStream:
        if self.draining:
            raise ServiceUnavailable(
                "This node is draining; retry the request.",
                code="draining",
                headers={"Retry-After": "1"},
            )
        await self.provider.require_model(request.model)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        info = StreamInfo(new_completion_id(), request.model, int(time.time()), include_usage)
        stream = LiveStream(
            id=uuid.uuid4().hex,
            owner=owner,
            info=info,
            window=self.config.memory_window,
            timings=Timings(accepted=accepted_at),
        )
        self.live[stream.id] = stream
        # The upstream call starts now, while the slot is claimed: no round trip before it.
        stream.task = asyncio.create_task(
            self._produce(stream, request), name=f"produce-{stream.id}"
        )
        claim = asyncio.ensure_future(self.slots.acquire(owner, stream.id, self.cancel_any))
        try:
            # Shielded: if this request is cancelled mid-claim, the claim still finishes and
            # a granted slot is given back instead of being held until its lease lapses.
            stream.slot_index = await asyncio.shield(claim)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                claim.add_done_callback(lambda done: self._give_back(owner, stream.id, done))
            if isinstance(exc, RateLimited):
                self.metrics.limit_rejections.inc()
            self._cancel_local(stream, "rejected")
            stream.admission.set_result(False)
            with contextlib.suppress(BaseException):
                await stream.task
            self.live.pop(stream.id, None)
            raise
        stream.admitted = True
        self.metrics.started.inc()
        self.metrics.active_streams.inc()
        stream.admission.set_result(True)
        self._flush_soon(stream)  # its record reaches the store now, without delaying anything
        return stream

    def _give_back(self, owner: str, stream_id: str, claim: asyncio.Future[int]) -> None:
        if not claim.cancelled() and claim.exception() is None:
            task = asyncio.ensure_future(self.slots.release(owner, claim.result(), stream_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def cancel_any(self, stream_id: str, reason: str) -> None:
        """Cancel a stream wherever its producer runs (used by the per-user limit)."""
        stream = self.live.get(stream_id)
        if stream is not None:
            self._cancel_local(stream, reason)
        else:
            await self.store.request_cancel(stream_id)

    async def cancel(self, owner: str, stream_id: str) -> dict[str, Any]:
        stream = self.live.get(stream_id)
        if stream is not None and stream.admitted:
            if stream.owner != owner:
                raise not_found(stream_id)
            if stream.task and not stream.task.done():
                self._cancel_local(stream, "client")
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(stream.task), 5)
            return {"id": stream_id, "status": stream.status}
        meta = await self._owned_meta(owner, stream_id, wait_s=0.5)
        status = await self._settled_status(meta)
        if status == "running":
            await self.store.request_cancel(stream_id)
            return {"id": stream_id, "status": "cancelling"}
        return {"id": stream_id, "status": status}

    async def describe(self, owner: str, stream_id: str) -> dict[str, Any]:
        stream = self.live.get(stream_id)
        if stream is not None and stream.admitted:
            if stream.owner != owner:
                raise not_found(stream_id)
            status = "failed" if stream.status == "lease_lost" else stream.status
            return {"id": stream_id, "status": status, "last_event_id": stream.last_seq}
        meta = await self._owned_meta(owner, stream_id, wait_s=0.5)
        return {
            "id": stream_id,
            "status": await self._settled_status(meta),
            "last_event_id": await self.store.last_seq(stream_id),
        }

    async def _settled_status(self, meta: StreamMeta) -> str:
        """A running stream whose producer's lease lapsed is failed (one node decides)."""
        if meta.status == "running" and meta.lease_until_ms < now_ms():
            await self.store.mark_lost(meta.id, now_ms())
            return "failed"
        return meta.status

    # --- the producer --------------------------------------------------------------------
    async def _produce(self, stream: LiveStream, request: ChatCompletionRequest) -> None:
        timings = stream.timings
        metrics = self.metrics
        status = "completed"
        upstream = self.provider.stream(request)
        try:
            stream.append("status", {"state": "thinking"})
            timings.upstream_sent = time.perf_counter()
            finish: Finish | None = None
            flush_at = self.config.flush_max_events
            observe_gap = metrics.inter_token.observe
            clock = time.perf_counter
            async for item in upstream:  # the per-token path: kept lean on purpose
                if isinstance(item, TokenDelta):
                    now = clock()
                    if timings.last_token is None:
                        timings.first_token = now
                    else:
                        observe_gap(now - timings.last_token)
                    timings.last_token = now
                    timings.tokens += 1
                    if stream.append_delta(item.text) - stream.flushed_seq >= flush_at:
                        self._flush_soon(stream)
                else:
                    finish = item
            reason = finish.reason if finish else "stop"
            stream.append("done", self._done_payload(stream, reason, finish))
        except asyncio.CancelledError:
            if stream.cancel_reason is None:  # not ours: the process is going down
                stream.cancel_reason = "drain_deadline"
            reason = stream.cancel_reason
            if reason in ("rejected", "lease_lost"):
                status = reason
            elif reason == "upstream_timeout":
                status = "failed"
                message = f"The model sent nothing for {self.config.upstream_idle_s:.0f} s."
                stream.append(
                    "error", {"code": "upstream_timeout", "message": message, "retryable": True}
                )
            elif reason == "drain_deadline":
                status = "failed"
                stream.append(
                    "error", {"code": "producer_lost", "message": LOST_MESSAGE, "retryable": True}
                )
            else:
                status = "cancelled"
                stream.append("done", self._done_payload(stream, "cancelled", None))
        except ApiError as exc:
            status = "failed"
            retryable = bool(
                getattr(exc, "retryable", exc.status_code >= 500 or exc.status_code == 429)
            )
            stream.append(
                "error",
                {
                    "code": exc.code or "upstream_error",
                    "message": exc.message,
                    "retryable": retryable,
                },
            )
        except Exception:
            log.exception("producer %s failed", stream.id)
            status = "failed"
            stream.append(
                "error",
                {
                    "code": "internal_error",
                    "message": "The stream failed unexpectedly.",
                    "retryable": True,
                },
            )
        finally:
            with contextlib.suppress(Exception):
                await upstream.aclose()  # type: ignore[attr-defined]
            stream.status = status
            stream.finished = True
            stream.wake()
            if await asyncio.shield(stream.admission):
                await asyncio.shield(self._finalize(stream))

    def _done_payload(
        self, stream: LiveStream, reason: str, finish: Finish | None
    ) -> dict[str, Any]:
        t = stream.timings
        end = time.perf_counter()
        ttft_ms = round((t.first_token - t.accepted) * 1000, 1) if t.first_token else None
        usage = (
            {
                "prompt_tokens": finish.usage.prompt_tokens,
                "completion_tokens": finish.usage.completion_tokens,
                "total_tokens": finish.usage.total_tokens,
            }
            if finish
            else None
        )
        return {
            "finish_reason": reason,
            "usage": usage,
            "metrics": {
                "ttft_ms": ttft_ms,
                "duration_ms": round((end - t.accepted) * 1000, 1),
                "tokens": t.tokens,
            },
        }

    async def _finalize(self, stream: LiveStream) -> None:
        t = stream.timings
        try:
            if stream.status != "lease_lost":
                with contextlib.suppress(LeaseLost):
                    await self._flush(stream, final=True)
                    await self._retry(
                        lambda: self.store.finish(
                            stream.id, self.node, stream.status, stream.last_seq
                        )
                    )
        except Exception:
            log.exception("final flush of %s failed; its lease will lapse", stream.id)
        finally:
            # A finished stream stays here for RETAIN_S, to answer its status and a resume
            # at its end from memory; what is stored need not stay in memory that long.
            stream.window = min(stream.window, self.config.retain_events)
            stream.trim()
            await self.slots.release(stream.owner, stream.slot_index, stream.id)
            self.metrics.active_streams.dec()
            self.metrics.finished.labels(stream.status).inc()
            self.metrics.tokens.inc(t.tokens)
            if t.first_token is not None:
                self.metrics.ttft.observe(t.first_token - t.accepted)
                self.metrics.stage_first_token.observe(t.first_token - t.accepted)
            if t.upstream_sent is not None:
                self.metrics.stage_upstream_sent.observe(t.upstream_sent - t.accepted)
            # One JSON line per stream: CloudWatch turns it into the TTFT metric.
            record = {
                "event": "stream_done",
                "stream_id": stream.id,
                "node": self.node,
                "status": stream.status,
                "ttft_ms": round((t.first_token - t.accepted) * 1000, 1) if t.first_token else None,
                "tokens": t.tokens,
                "duration_ms": round((time.perf_counter() - t.accepted) * 1000, 1),
            }
            log.info("%s", _json_line.encode(record).decode())
        loop = asyncio.get_running_loop()
        loop.call_later(self.config.retain_s, self._forget, stream)

    def _forget(self, stream: LiveStream) -> None:
        if self.live.get(stream.id) is stream and stream.readers == 0:
            del self.live[stream.id]
        elif self.live.get(stream.id) is stream:
            asyncio.get_running_loop().call_later(self.config.retain_s, self._forget, stream)
