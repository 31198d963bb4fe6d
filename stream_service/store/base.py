"""The store interface the engine relies on, and the records it holds.

Semantics every backend keeps:
- ``append`` is idempotent: a batch is keyed by its first seq and written only if absent,
  so a retried flush never writes twice.
- ``heartbeat`` and ``finish`` succeed only for the node that owns a running stream
  (a zombie producer learns it lost its lease).
- ``mark_lost`` flips a running stream whose lease lapsed to ``failed`` exactly once.
- ``create`` succeeds only while the stream is new or still running on the same node (a
  retried first write never turns a stream another node declared lost back to running).
- Per-user admission is one conditional write on the user's record, whatever the user's
  number of active streams: it holds a count and one entry (holder) per active stream,
  naming the node that runs it. Holders of nodes whose heartbeat lapsed are evicted by
  the next admission that finds the user at the limit, so a dead node's slots lapse.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

StoredEvent = tuple[int, str, bytes]  # (seq, kind, JSON data)


def now_ms() -> int:
    return int(time.time() * 1000)


class LeaseLost(Exception):
    """This node no longer owns the stream (another node declared it lost)."""


@dataclass(slots=True)
class StreamMeta:
    id: str
    owner: str
    node: str
    model: str
    status: str = "running"  # running | completed | cancelled | failed
    created_ms: int = field(default_factory=now_ms)
    lease_until_ms: int = 0
    cancel: bool = False
    reader_until_ms: int = 0
    last_seq: int = 0
    completion_id: str = ""
    include_usage: bool = False


@dataclass(slots=True)
class ReadResult:
    events: list[StoredEvent]
    more: bool = False  # a page limit cut it: read again after the last event


@dataclass(slots=True)
class PollResult:
    cancel: bool
    reader_until_ms: int
    # since when its producer's node has seen no reader (0: read, or not yet known): the
    # per-user limit cancels such a stream first (SPEC section 11)
    unread_since_ms: int = 0


@dataclass(frozen=True, slots=True)
class Holder:
    """One active stream of a user, as the user's admission record holds it."""

    stream_id: str
    node: str
    created_ms: int


@dataclass(slots=True)
class Admission:
    admitted: bool
    holders: list[Holder]  # when refused: the user's active streams as stored


WriteObserver = Callable[[str, float], None]  # (operation, seconds)


class StreamStore(abc.ABC):
    def __init__(self, *, ttl_s: int, max_batch: int) -> None:
        self.ttl_s = ttl_s
        self.max_batch = max_batch
        self.writes = 0
        self._observers: list[WriteObserver] = []

    def observe_writes(self, observer: WriteObserver) -> None:
        self._observers.append(observer)

    def _wrote(self, op: str, seconds: float) -> None:
        self.writes += 1
        for observer in self._observers:
            observer(op, seconds)

    def expires_at(self) -> int:
        return int(time.time()) + self.ttl_s

    # --- streams -----------------------------------------------------------------------
    @abc.abstractmethod
    async def create(self, meta: StreamMeta) -> None:
        """Write the stream's record; raises :class:`LeaseLost` if it exists and is no longer
        running on ``meta.node``."""

    @abc.abstractmethod
    async def get_meta(self, stream_id: str) -> StreamMeta | None: ...

    @abc.abstractmethod
    async def append(self, stream_id: str, events: list[StoredEvent]) -> bool:
        """Write one batch (``len(events) <= max_batch``); False if it already existed."""

    @abc.abstractmethod
    async def read(self, stream_id: str, after_seq: int, limit: int | None = None) -> ReadResult:
        """Stored events with ``seq > after_seq``, in order; with ``limit``, about that many
        at most (whole batches) and ``more`` set when there are others after them."""

    @abc.abstractmethod
    async def last_seq(self, stream_id: str) -> int: ...

    @abc.abstractmethod
    async def heartbeat(
        self, stream_id: str, node: str, lease_until_ms: int, last_seq: int
    ) -> PollResult:
        """Extend the producer's lease; raises :class:`LeaseLost` if it is not ours."""

    @abc.abstractmethod
    async def poll(self, stream_ids: list[str]) -> dict[str, PollResult]:
        """Cross-node facts for running streams (cancel flags, remote reader heartbeats)."""

    @abc.abstractmethod
    async def finish(self, stream_id: str, node: str, status: str, last_seq: int) -> None: ...

    @abc.abstractmethod
    async def request_cancel(self, stream_id: str) -> None: ...

    @abc.abstractmethod
    async def touch_reader(self, stream_id: str, until_ms: int) -> None: ...

    @abc.abstractmethod
    async def mark_lost(self, stream_id: str, at_ms: int) -> bool: ...

    @abc.abstractmethod
    async def mark_unread(self, stream_id: str, since_ms: int) -> None:
        """The producer's node: nobody reads the stream since ``since_ms`` (0: read again).
        Written when that changes, not per poll."""

    # --- per-user admission -----------------------------------------------------------
    @abc.abstractmethod
    async def admit(self, user: str, holder: Holder, limit: int) -> Admission:
        """Add ``holder`` if the user holds fewer than ``limit`` streams (one write)."""

    @abc.abstractmethod
    async def release(self, user: str, stream_id: str) -> bool:
        """Remove the stream's holder; False if it was not there (already released, evicted
        or replaced)."""

    @abc.abstractmethod
    async def replace(self, user: str, old_stream_id: str, holder: Holder) -> bool:
        """Hand the old stream's place to ``holder`` (the count is unchanged); False if the
        old one is no longer held."""

    @abc.abstractmethod
    async def evict(self, user: str, stream_ids: list[str]) -> int:
        """Remove holders (of dead nodes); how many were removed."""

    @abc.abstractmethod
    async def node_heartbeat(self, node: str, until_ms: int) -> None:
        """This node is alive until ``until_ms``."""

    @abc.abstractmethod
    async def live_nodes(self, nodes: list[str], at_ms: int) -> set[str]:
        """Those of ``nodes`` whose heartbeat has not lapsed at ``at_ms``."""
