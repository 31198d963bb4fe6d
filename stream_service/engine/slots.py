"""The per-user limit on active streams, across the cluster (``MAX_STREAMS_PER_USER``).

Admission is one conditional write on the user's record (a count and one holder per active
stream), whatever the user's number of streams, and it happens before the upstream call:
a refused create sends nothing upstream. Only a create that finds the user at the limit
costs more: it checks whether the holders' nodes are alive (one read of their
heartbeats), evicts the holders of dead nodes (so a crashed node's slots lapse on their
own). Then a stream nobody reads (on any node) yields first: the oldest such one hands its
place to the new one and is cancelled, wherever it runs, under either policy (SPEC section
11). Only when every active stream is read does the policy decide: refuse
(``STREAM_LIMIT_POLICY=reject``: 429 + Retry-After) or hand the user's oldest stream's
place to the new one and cancel the old one (``replace``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from stream_service.engine.errors import too_many_streams
from stream_service.engine.types import StopReason
from stream_service.store import Holder, StreamStore
from stream_service.store.base import now_ms

log = logging.getLogger("rtai.stream.slots")

StopAnywhere = Callable[[str, StopReason], Awaitable[None]]
# which of these holders' streams nobody reads, on any node
FindUnread = Callable[[list[Holder]], Awaitable[set[str]]]


async def _none_unread(holders: list[Holder]) -> set[str]:
    del holders
    return set()


RETRY_AFTER_S = 5


class Slots:
    def __init__(
        self,
        store: StreamStore,
        *,
        node: str,
        limit: int,
        policy: str,
        node_ttl_s: float,
        stop_anywhere: StopAnywhere,
        find_unread: FindUnread = _none_unread,
    ) -> None:
        self.store = store
        self.node = node
        self.limit = limit
        self.policy = policy
        self.node_ttl_ms = int(node_ttl_s * 1000)
        self._stop_anywhere = stop_anywhere
        self._find_unread = find_unread
        self._beat: asyncio.Task[None] | None = None
        self._unreleased: set[tuple[str, str]] = set()  # (user, stream id) to give back

    # --- node liveness ----------------------------------------------------------------------
    async def start(self) -> None:
        """Announce this node (its holders count as alive while it beats), then keep beating."""
        await self.store.node_heartbeat(self.node, now_ms() + self.node_ttl_ms)
        self._beat = asyncio.create_task(self._heartbeat_loop(), name="node-heartbeat")

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.node_ttl_ms / 3000)
            try:
                await self.store.node_heartbeat(self.node, now_ms() + self.node_ttl_ms)
            except Exception:
                log.warning("node heartbeat failed", exc_info=True)
            await self._release_unreleased()

    # --- admission --------------------------------------------------------------------------
    async def acquire(self, user: str, stream_id: str) -> None:
        """Admit ``stream_id`` or raise 429 (``reject``); ``replace`` stops the oldest."""
        holder = Holder(stream_id, self.node, now_ms())
        for _ in range(3):
            admission = await self.store.admit(user, holder, self.limit)
            if admission.admitted:
                return
            holders = admission.holders
            nodes = sorted({h.node for h in holders if h.node != self.node})
            alive = await self.store.live_nodes(nodes, now_ms()) if nodes else set()
            alive.add(self.node)
            dead = [h.stream_id for h in holders if h.node not in alive]
            if dead and await self.store.evict(user, dead):
                log.info("evicted %d streams of dead nodes held by %s", len(dead), user)
                continue  # room was made: try again
            live = [h for h in holders if h.node in alive]
            unread = await self._unread(live)
            if unread:  # a stream nobody reads yields its slot first, under either policy
                victims = [h for h in live if h.stream_id in unread]
                reason = StopReason.UNREAD
            elif self.policy == "reject" or not live:
                raise too_many_streams(len(live), self.limit, RETRY_AFTER_S)
            else:
                victims, reason = live, StopReason.REPLACED
            oldest = min(victims, key=lambda h: h.created_ms)
            if await self.store.replace(user, oldest.stream_id, holder):
                await self._stop_anywhere(oldest.stream_id, reason)
                return
        raise too_many_streams(self.limit, self.limit, 1)

    async def _unread(self, holders: list[Holder]) -> set[str]:
        try:
            return await self._find_unread(holders)
        except Exception:  # unknown: as if every stream were read (the policy decides)
            log.warning("could not tell which streams are unread", exc_info=True)
            return set()

    async def release(self, user: str, stream_id: str) -> None:
        """Give the slot back. A store that keeps failing (boto3 retries each call too) does
        not keep it: this node retries with each heartbeat for as long as it lives (a live
        node's holders never lapse, so giving up would cost the user a slot for good)."""
        for attempt in range(3):
            try:
                await self.store.release(user, stream_id)
                return
            except Exception:
                log.warning("could not release the slot of %s", stream_id, exc_info=True)
                if attempt < 2:
                    await asyncio.sleep(0.2 * 2**attempt)
        self._unreleased.add((user, stream_id))

    async def _release_unreleased(self) -> None:
        for user, stream_id in list(self._unreleased):
            try:
                await self.store.release(user, stream_id)
            except Exception:
                log.warning("slot of %s still not released", stream_id, exc_info=True)
                return  # the store still fails: the next heartbeat tries again
            self._unreleased.discard((user, stream_id))
