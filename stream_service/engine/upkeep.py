"""Upkeep: batching events into the store, producer leases, and cross-node facts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stream_service.engine.base import EngineBase, log
from stream_service.engine.live import LiveStream
from stream_service.store import LeaseLost, StreamMeta
from stream_service.store.base import StoredEvent, now_ms


class Upkeep(EngineBase):
    # --- store batching ------------------------------------------------------------------
    def _meta(self, stream: LiveStream) -> StreamMeta:
        return StreamMeta(
            id=stream.id,
            owner=stream.owner,
            node=self.node,
            model=stream.info.model,
            lease_until_ms=now_ms() + int(self.config.lease_ttl_s * 1000),
            completion_id=stream.info.completion_id,
            include_usage=stream.info.include_usage,
            created_ms=int(stream.info.created_s * 1000),
        )

    async def _flush(self, stream: LiveStream, final: bool = False) -> None:
        async with stream.lock:
            if not stream.meta_written:
                await self._retry(lambda: self.store.create(self._meta(stream)), final)
                stream.meta_written = True
                stream.last_heartbeat = time.monotonic()
            while pending := stream.unflushed():
                batch = [e.stored() for e in pending[: self.store.max_batch]]
                written = await self._retry(lambda b=batch: self.store.append(stream.id, b), final)
                if not written:  # that key was already written: by an earlier try, or not us?
                    await self._after_conflict(stream, batch)
                    continue
                stream.flushed_seq = batch[-1][0]
            stream.trim()

    async def _after_conflict(self, stream: LiveStream, batch: list[StoredEvent]) -> None:
        """A batch key existed. If another node has declared this stream lost, stop; else an
        earlier attempt wrote part of it: carry on after what is stored."""
        meta = await self.store.get_meta(stream.id)
        if meta is None or meta.status != "running" or meta.node != self.node:
            raise LeaseLost(stream.id)
        stored = await self.store.last_seq(stream.id)
        if stored < batch[0][0]:
            raise LeaseLost(stream.id)  # cannot happen with ordered flushes; be safe
        stream.flushed_seq = max(stream.flushed_seq, min(stored, batch[-1][0]))

    async def _retry(self, op: Any, persistent: bool = True) -> Any:
        """boto3 already retries; this outer loop keeps a final flush going through an outage."""
        attempts = 20 if persistent else 1
        for attempt in range(attempts):
            try:
                return await op()
            except LeaseLost:
                raise
            except Exception:
                if attempt == attempts - 1:
                    raise
                log.warning("store write failed; retrying", exc_info=True)
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        return None

    def _flush_soon(self, stream: LiveStream) -> None:
        if stream.admitted and not stream.flush_queued:
            stream.flush_queued = True
            self._flush_queue.put_nowait(stream)

    async def _flush_worker(self) -> None:
        while True:
            stream = await self._flush_queue.get()
            stream.flush_queued = False
            try:
                await self._flush(stream)
            except LeaseLost:
                log.warning("stream %s was declared lost by another node", stream.id)
                self._cancel_local(stream, "lease_lost")
            except Exception:
                log.warning("flush of %s failed; will retry", stream.id, exc_info=True)
            finally:
                self._flush_queue.task_done()

    async def _keepalive_loop(self) -> None:
        """Wake idle readers twice per keepalive interval: they ping if they have been silent
        for half of it, so no connection is ever silent for a whole ``KEEPALIVE_S``."""
        interval = self.settings.keepalive_s / 2
        while True:
            await asyncio.sleep(interval)
            for stream in list(self.live.values()):
                stream.wake()

    async def _flush_loop(self) -> None:
        interval = self.config.flush_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            for stream in list(self.live.values()):
                if (
                    stream.admitted
                    and not stream.finished
                    and (stream.last_seq > stream.flushed_seq or not stream.meta_written)
                ):
                    self._flush_soon(stream)

    # --- cross-node facts -----------------------------------------------------------------
    async def _poll_loop(self) -> None:
        interval = self.config.poll_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self._poll_once()
            except Exception:
                log.warning("poll failed", exc_info=True)

    async def _poll_once(self) -> None:
        running = [
            s for s in self.live.values() if s.admitted and not s.finished and s.meta_written
        ]
        if not running:
            return
        facts = await self.store.poll([s.id for s in running])
        now_mono = time.monotonic()
        perf_now = time.perf_counter()
        wall = now_ms()
        heartbeat_s = self.config.heartbeat_s
        lease_ms = int(self.config.lease_ttl_s * 1000)
        beats = []
        for stream in running:
            fact = facts.get(stream.id)
            if fact is not None:
                stream.remote_reader_until_ms = fact.reader_until_ms
                if fact.reader_until_ms >= wall:  # read on another node: the grace restarts
                    stream.detached_since = now_mono
                if fact.cancel:
                    self._cancel_local(stream, "client")
                    continue
            heard = stream.timings.last_token or stream.timings.upstream_sent
            if heard is not None and perf_now - heard > self.config.upstream_idle_s:
                self._cancel_local(stream, "upstream_timeout")
                continue
            unread = stream.readers == 0 and stream.remote_reader_until_ms < wall
            if unread and now_mono - stream.detached_since >= self.settings.resume_grace_s:
                self._cancel_local(stream, "no_reader")
                continue
            if now_mono - stream.last_heartbeat >= heartbeat_s:
                stream.last_heartbeat = now_mono
                beats.append(self._heartbeat(stream, wall + lease_ms))
            self.slots.maybe_renew(stream.owner, stream.slot_index, stream.id, beats)
        if beats:
            await asyncio.gather(*beats, return_exceptions=True)

    async def _heartbeat(self, stream: LiveStream, lease_until: int) -> None:
        try:
            await self.store.heartbeat(stream.id, self.node, lease_until, stream.flushed_seq)
        except LeaseLost:
            log.warning("lost the lease of %s; stopping its producer", stream.id)
            self._cancel_local(stream, "lease_lost")

    async def _reader_heartbeat_loop(self) -> None:
        interval = self.reader_heartbeat_s
        while True:
            await asyncio.sleep(interval)
            ids = [sid for sid, count in self.remote_readers.items() if count > 0]
            until = now_ms() + int(interval * 2500)
            await asyncio.gather(
                *(self.store.touch_reader(sid, until) for sid in ids), return_exceptions=True
            )
