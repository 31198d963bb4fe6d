"""An in-process store with the same semantics, for unit tests and benchmarks.

Like DynamoDB's TTL, a stream's records go once ``ttl_s`` has passed since its last write
(swept at most once a minute, when a stream is created), so a long-running single node
does not grow without bound.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import time
from dataclasses import dataclass, field

from stream_service.store.base import (
    Admission,
    Holder,
    LeaseLost,
    PollResult,
    ReadResult,
    StoredEvent,
    StreamMeta,
    StreamStore,
)


@dataclass
class _Stream:
    meta: StreamMeta
    firsts: list[int] = field(default_factory=list)
    batches: dict[int, tuple[tuple[StoredEvent, ...], int]] = field(default_factory=dict)
    expires_at: int = 0


class MemoryStore(StreamStore):
    def __init__(self, *, ttl_s: int = 3600, max_batch: int = 64, latency_s: float = 0.0) -> None:
        super().__init__(ttl_s=ttl_s, max_batch=max_batch)
        self._streams: dict[str, _Stream] = {}
        self._holders: dict[str, dict[str, Holder]] = {}  # user -> stream id -> holder
        self._nodes: dict[str, int] = {}  # node -> alive until (ms)
        self._early_cancels: set[str] = set()
        self._unread: dict[str, int] = {}  # stream id -> unread since (ms)
        self.latency_s = latency_s
        self._next_sweep = 0.0

    async def _io(self) -> None:
        await asyncio.sleep(self.latency_s)

    def _write(self, op: str, stream: _Stream | None = None) -> None:
        self._wrote(op, self.latency_s)
        if stream is not None:
            stream.expires_at = self.expires_at()

    def _sweep(self) -> None:
        now = time.time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(60, self.ttl_s)
        expired = [sid for sid, s in self._streams.items() if s.expires_at <= now]
        for sid in expired:
            del self._streams[sid]
            self._unread.pop(sid, None)

    async def create(self, meta: StreamMeta) -> None:
        await self._io()
        self._sweep()
        current = self._streams.get(meta.id)
        if current is not None and (
            current.meta.node != meta.node or current.meta.status != "running"
        ):
            raise LeaseLost(meta.id)
        stream = self._streams.setdefault(meta.id, _Stream(copy.copy(meta)))
        self._write("create", stream)
        if meta.id in self._early_cancels:
            self._early_cancels.discard(meta.id)
            stream.meta.cancel = True

    async def get_meta(self, stream_id: str) -> StreamMeta | None:
        await self._io()
        stream = self._streams.get(stream_id)
        return copy.copy(stream.meta) if stream else None

    async def append(self, stream_id: str, events: list[StoredEvent]) -> bool:
        await self._io()
        stream = self._streams[stream_id]
        self._write("append", stream)
        first = events[0][0]
        if first in stream.batches:
            return False
        bisect.insort(stream.firsts, first)
        stream.batches[first] = (tuple(events), int(time.time() * 1000))
        return True

    async def read(self, stream_id: str, after_seq: int, limit: int | None = None) -> ReadResult:
        await self._io()
        stream = self._streams.get(stream_id)
        if stream is None:
            return ReadResult([])
        out: list[StoredEvent] = []
        start = bisect.bisect_left(stream.firsts, after_seq - self.max_batch + 1)
        firsts = stream.firsts[start:]
        for n, first in enumerate(firsts):
            if limit is not None and len(out) >= limit:
                return ReadResult(out, more=n < len(firsts))
            events, _ = stream.batches[first]
            out.extend(e for e in events if e[0] > after_seq)
        return ReadResult(out)

    async def last_seq(self, stream_id: str) -> int:
        stream = self._streams.get(stream_id)
        if not stream or not stream.firsts:
            return 0
        return stream.batches[stream.firsts[-1]][0][-1][0]

    async def heartbeat(
        self, stream_id: str, node: str, lease_until_ms: int, last_seq: int
    ) -> PollResult:
        await self._io()
        self._write("heartbeat")
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LeaseLost(stream_id)
        meta = stream.meta
        if meta.node != node or meta.status != "running":
            raise LeaseLost(stream_id)
        meta.lease_until_ms = lease_until_ms
        meta.last_seq = last_seq
        return PollResult(meta.cancel, meta.reader_until_ms, self._unread.get(stream_id, 0))

    async def poll(self, stream_ids: list[str]) -> dict[str, PollResult]:
        await self._io()
        return {
            sid: PollResult(s.meta.cancel, s.meta.reader_until_ms, self._unread.get(sid, 0))
            for sid in stream_ids
            if (s := self._streams.get(sid))
        }

    async def mark_unread(self, stream_id: str, since_ms: int) -> None:
        await self._io()
        self._write("unread")
        if stream_id in self._streams:
            self._unread[stream_id] = since_ms

    async def finish(self, stream_id: str, node: str, status: str, last_seq: int) -> None:
        await self._io()
        self._write("finish")
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LeaseLost(stream_id)
        meta = stream.meta
        if meta.node != node or meta.status != "running":
            raise LeaseLost(stream_id)
        meta.status = status
        meta.last_seq = last_seq

    async def request_cancel(self, stream_id: str) -> None:
        await self._io()
        self._write("cancel")
        if stream := self._streams.get(stream_id):
            stream.meta.cancel = True
        else:
            self._early_cancels.add(stream_id)

    async def touch_reader(self, stream_id: str, until_ms: int) -> None:
        await self._io()
        self._write("reader")
        if stream := self._streams.get(stream_id):
            stream.meta.reader_until_ms = until_ms

    async def mark_lost(self, stream_id: str, at_ms: int) -> bool:
        await self._io()
        self._write("mark_lost")
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        meta = stream.meta
        if meta.status == "running" and meta.lease_until_ms < at_ms:
            meta.status = "failed"
            return True
        return False

    # --- per-user admission -----------------------------------------------------------
    async def admit(self, user: str, holder: Holder, limit: int) -> Admission:
        await self._io()
        self._write("admit")
        holders = self._holders.setdefault(user, {})
        if holder.stream_id in holders or len(holders) < limit:
            holders[holder.stream_id] = holder
            return Admission(True, [])
        return Admission(False, list(holders.values()))

    async def release(self, user: str, stream_id: str) -> bool:
        await self._io()
        self._write("release")
        holders = self._holders.get(user, {})
        return holders.pop(stream_id, None) is not None

    async def replace(self, user: str, old_stream_id: str, holder: Holder) -> bool:
        await self._io()
        self._write("replace")
        holders = self._holders.get(user, {})
        if holders.pop(old_stream_id, None) is None:
            return False
        holders[holder.stream_id] = holder
        return True

    async def evict(self, user: str, stream_ids: list[str]) -> int:
        await self._io()
        self._write("evict")
        holders = self._holders.get(user, {})
        return sum(holders.pop(sid, None) is not None for sid in stream_ids)

    async def node_heartbeat(self, node: str, until_ms: int) -> None:
        await self._io()
        self._write("node")
        self._nodes[node] = until_ms

    async def live_nodes(self, nodes: list[str], at_ms: int) -> set[str]:
        await self._io()
        return {n for n in nodes if self._nodes.get(n, 0) >= at_ms}
