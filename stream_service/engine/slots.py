"""The per-user limit on active streams, across the cluster (``MAX_STREAMS_PER_USER``).

Each active stream holds one of the user's numbered slots: a lease record in the store
that its producer renews and releases in ``finally``; a dead node's slots lapse on their
own. ``STREAM_LIMIT_POLICY=reject`` answers 429 with Retry-After; ``replace`` cancels the
user's oldest stream (wherever it runs) and takes its slot.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from itertools import islice
from typing import Any

from core.errors import RateLimited
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.store import Slot, StreamStore
from stream_service.store.base import now_ms

log = logging.getLogger("rtai.stream.slots")

CancelAny = Callable[[str, str], Awaitable[None]]
RETRY_AFTER_S = 5


class SlotManager:
    def __init__(self, store: StreamStore, settings: Settings, config: StreamSettings) -> None:
        self.store = store
        self.limit = settings.max_streams_per_user
        self.policy = settings.stream_limit_policy
        self.ttl_ms = int(config.slot_ttl_s * 1000)
        self._held: dict[str, tuple[float, int]] = {}  # stream id -> (last renewal, created ms)

    async def acquire(self, user: str, stream_id: str, cancel_any: CancelAny) -> int:
        for attempt in range(8):
            now = now_ms()
            live = [
                s
                for s in await self.store.list_slots(user)
                if s.lease_until_ms >= now and s.stream_id != stream_id
            ]
            if len(live) < self.limit:
                taken = {s.index for s in live}
                free = list(islice((i for i in range(self.limit) if i not in taken), 64))
                # Concurrent creates by one user would all race for the lowest index.
                index = free[0] if attempt == 0 else random.choice(free)
                if await self.store.claim_slot(
                    user, Slot(index, stream_id, now + self.ttl_ms, now), now
                ):
                    self._held[stream_id] = (time.monotonic(), now)
                    return index
                continue  # lost a race for that slot: look again
            if self.policy == "reject":
                raise RateLimited(
                    f"You have {len(live)} active streams; the limit is {self.limit}. "
                    "Wait for one to finish, or cancel one.",
                    retry_after_s=RETRY_AFTER_S,
                    code="too_many_streams",
                )
            oldest = min(live, key=lambda s: s.created_ms)
            await cancel_any(oldest.stream_id, "replaced")
            slot = Slot(oldest.index, stream_id, now + self.ttl_ms, now)
            if await self.store.claim_slot(user, slot, now, expect_stream=oldest.stream_id):
                self._held[stream_id] = (time.monotonic(), now)
                return oldest.index
        raise RateLimited(
            "Could not claim a stream slot; retry.", retry_after_s=1, code="too_many_streams"
        )

    def maybe_renew(
        self, user: str, index: int | None, stream_id: str, tasks: list[Coroutine[Any, Any, None]]
    ) -> None:
        held = self._held.get(stream_id)
        if index is None or held is None or time.monotonic() - held[0] < self.ttl_ms / 3000:
            return
        self._held[stream_id] = (time.monotonic(), held[1])
        tasks.append(self._renew(user, Slot(index, stream_id, now_ms() + self.ttl_ms, held[1])))

    async def _renew(self, user: str, slot: Slot) -> None:
        if not await self.store.claim_slot(user, slot, now_ms()):
            log.info("slot of %s was taken over", slot.stream_id)

    async def release(self, user: str, index: int | None, stream_id: str) -> None:
        self._held.pop(stream_id, None)
        if index is None:
            return
        try:
            await self.store.release_slot(user, index, stream_id)
        except Exception:  # it lapses on its own
            log.warning("could not release slot of %s", stream_id, exc_info=True)
