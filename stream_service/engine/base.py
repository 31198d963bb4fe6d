"""What every part of the stream engine shares: its state, and a few small decisions.

The engine is split by concern: :mod:`.upkeep` (store batching, leases, cross-node facts),
:mod:`.readers` (serving events from memory or the store) and :mod:`.engine` (creating,
producing, cancelling, draining), all over this base.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from core.errors import InvalidRequest, NotFound
from core.providers import ModelProvider
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.live import LiveStream
from stream_service.engine.slots import SlotManager
from stream_service.metrics import StreamMetrics
from stream_service.store import StreamMeta, StreamStore

log = logging.getLogger("rtai.stream")

LOST_MESSAGE = (
    "The node producing this stream stopped. The events so far are stored; retry to continue."
)


class EngineBase:
    def __init__(
        self,
        settings: Settings,
        config: StreamSettings,
        store: StreamStore,
        provider: ModelProvider,
        metrics: StreamMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.store = store
        self.provider = provider
        self.metrics = metrics or StreamMetrics()
        self.node = config.node_id
        self.live: dict[str, LiveStream] = {}
        self.remote_readers: defaultdict[str, int] = defaultdict(int)
        self.draining = False
        self.slots = SlotManager(store, settings, config)
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[None]] = set()
        # Streams with events to flush; a fixed set of workers writes them (no task per flush).
        self._flush_queue: asyncio.Queue[LiveStream] = asyncio.Queue()
        store.observe_writes(self.metrics.store_write)

    def _cancel_local(self, stream: LiveStream, reason: str) -> None:
        if stream.finished:
            return  # finishing up (final flush): nothing upstream to stop
        if stream.task and not stream.task.done() and stream.cancel_reason is None:
            stream.cancel_reason = reason
            stream.task.cancel()
            if reason not in ("rejected", "lease_lost"):
                self.metrics.upstream_cancels.labels(reason).inc()

    async def _owned_meta(self, owner: str, stream_id: str, wait_s: float = 0.0) -> StreamMeta:
        """The stream's record; ``wait_s`` covers a reader that reaches another node in the
        first milliseconds of a stream, before its record is written."""
        deadline = time.monotonic() + wait_s
        while True:
            meta = await self.store.get_meta(stream_id)
            if meta is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if meta is None or meta.owner != owner:
            raise not_found(stream_id)
        return meta

    @property
    def reader_heartbeat_s(self) -> float:
        return max(0.2, min(5.0, self.settings.resume_grace_s / 4))


def not_found(stream_id: str) -> NotFound:
    return NotFound(f"No stream '{stream_id}'.", code="stream_not_found")


def beyond(after: int, last: int) -> InvalidRequest:
    return InvalidRequest(
        f"Last-Event-ID {after} is beyond this stream's last event ({last}).",
        code="invalid_last_event_id",
    )
