"""The bus interface, Litestar-channels style: publish bytes to a channel; subscribe an
async handler to a channel; a health state; ``on_reconnect`` hooks.

Delivery is at-most-once (pub/sub): whatever must not be lost is also in the store.
A publication reaches the publishing node's own subscribers directly (in order, whether
or not the remote side is up) and every other node's subscribers through the backend.

Handlers run on the bus's delivery path, one after another in publication order: they
must be quick (hand the bytes to a bounded buffer, schedule slower work as a task).
A handler that raises is logged and counted; it never stops delivery.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("rtai.rooms.bus")

Handler = Callable[[str, bytes], Awaitable[None]]  # (channel, data)
ReconnectHook = Callable[[], Coroutine[Any, Any, None]]


class BusState(enum.StrEnum):
    STOPPED = "stopped"  # not started yet
    CONNECTING = "connecting"  # first connection in progress
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # an outage: reconnecting with backoff
    CLOSED = "closed"


@dataclass(eq=False, slots=True)
class Subscription:
    """One handler on one channel; pass it back to :meth:`Bus.unsubscribe`."""

    channel: str
    handler: Handler


@dataclass(frozen=True, slots=True)
class BusHealth:
    kind: str
    state: BusState
    outages: int
    # Seconds since the current outage began (0 when connected).
    down_for_s: float
    # What a backend adds (a cluster: its shards up and down).
    detail: Mapping[str, object] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.state is BusState.CONNECTED

    def with_detail(self, **detail: object) -> BusHealth:
        return replace(self, detail={**self.detail, **detail})

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "state": self.state.value,
            "outages": self.outages,
            "down_for_s": round(self.down_for_s, 3),
            **self.detail,
        }


@dataclass(slots=True)
class BusMetrics:
    """Prometheus series of one bus; register them on the node's registry."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    connected: Gauge = field(init=False)
    outages: Counter = field(init=False)
    reconnects: Counter = field(init=False)
    published: Counter = field(init=False)
    publish_failures: Counter = field(init=False)
    received: Counter = field(init=False)
    handler_errors: Counter = field(init=False)
    channels: Gauge = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.connected = Gauge(
            "rtai_bus_connected",
            "1 while the room bus is connected, 0 during an outage.",
            registry=r,
        )
        self.outages = Counter(
            "rtai_bus_outages", "Room-bus connections lost (or never made).", registry=r
        )
        self.reconnects = Counter(
            "rtai_bus_reconnects",
            "Room-bus connections re-established after an outage.",
            registry=r,
        )
        self.published = Counter(
            "rtai_bus_published", "Publications sent to other nodes.", registry=r
        )
        self.publish_failures = Counter(
            "rtai_bus_publish_failures",
            "Publications that could not reach other nodes (bus down or a send error).",
            registry=r,
        )
        self.received = Counter(
            "rtai_bus_received", "Publications received from other nodes.", registry=r
        )
        self.handler_errors = Counter(
            "rtai_bus_handler_errors", "Subscriber handlers that raised.", registry=r
        )
        self.channels = Gauge(
            "rtai_bus_channels", "Channels this node is subscribed to.", registry=r
        )


class Bus(abc.ABC):
    kind: str = "abstract"

    def __init__(self, node_id: str, metrics: BusMetrics | None = None) -> None:
        self.node_id = node_id
        self.metrics = metrics or BusMetrics()
        self._subs: dict[str, list[Subscription]] = {}
        self._hooks: list[ReconnectHook] = []
        self._state = BusState.STOPPED
        self._outages = 0
        self._down_since: float | None = None
        self._connected_event = asyncio.Event()

    # --- state -------------------------------------------------------------------------
    @property
    def state(self) -> BusState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is BusState.CONNECTED

    @property
    def shared(self) -> bool:
        """True when other nodes can be on this bus (presence must be synced through it)."""
        return False

    def health(self) -> BusHealth:
        down = 0.0 if self._down_since is None else time.monotonic() - self._down_since
        return BusHealth(self.kind, self._state, self._outages, down)

    def channels(self) -> list[str]:
        return list(self._subs)

    def _set_state(self, state: BusState) -> None:
        if state is self._state:
            return
        if state is BusState.DISCONNECTED and self._state in (
            BusState.CONNECTED,
            BusState.CONNECTING,
        ):
            self._outages += 1
            self.metrics.outages.inc()
            self._down_since = time.monotonic()
        if state is BusState.CONNECTED:
            self._down_since = None
        self._state = state
        self.metrics.connected.set(1 if state is BusState.CONNECTED else 0)
        if state is BusState.CONNECTED:
            self._connected_event.set()
        else:
            self._connected_event.clear()

    def on_reconnect(self, hook: ReconnectHook) -> None:
        """Run ``hook`` (as a task) each time the bus is connected again after an outage:
        subscriptions are already restored; re-announce what others may have missed."""
        self._hooks.append(hook)

    def _run_reconnect_hooks(self) -> None:
        for hook in self._hooks:
            task: asyncio.Task[None] = asyncio.get_running_loop().create_task(hook())
            task.add_done_callback(_log_hook_failure)

    # --- lifecycle -----------------------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None: ...

    async def _wait_connected(self, within_s: float) -> None:
        """Until connected or ``within_s`` passed (a node starts with its bus down too)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected_event.wait(), within_s)

    @abc.abstractmethod
    async def close(self) -> None: ...

    # --- pub/sub -------------------------------------------------------------------------
    async def publish(self, channel: str, data: bytes) -> bool:
        """Deliver ``data`` to this node's subscribers of ``channel`` now and send it to the
        other nodes; False when the other nodes could not be reached (at-most-once)."""
        await self._deliver(channel, data)
        return await self._publish_remote(channel, data)

    async def subscribe(self, channel: str, handler: Handler) -> Subscription:
        """Add ``handler`` to ``channel``. Returns once the backend confirmed the channel (or
        its confirmation timed out, or the bus is down: it resubscribes on reconnect), so a
        caller may read its backlog right after: nothing published later is missed."""
        sub = Subscription(channel, handler)
        subs = self._subs.setdefault(channel, [])
        subs.append(sub)
        if len(subs) == 1:
            self.metrics.channels.set(len(self._subs))
            await self._subscribe_remote(channel)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.channel)
        if not subs or sub not in subs:
            return
        subs.remove(sub)
        if not subs:
            del self._subs[sub.channel]
            self.metrics.channels.set(len(self._subs))
            await self._unsubscribe_remote(sub.channel)

    async def _deliver(self, channel: str, data: bytes) -> None:
        subs = self._subs.get(channel)
        if not subs:
            return
        for sub in tuple(subs):
            try:
                await sub.handler(channel, data)
            except Exception:
                self.metrics.handler_errors.inc()
                log.exception("bus handler for %s failed", channel)

    async def _receive_remote(self, channel: str, data: bytes) -> None:
        """Another node's publication arrived through the backend."""
        self.metrics.received.inc()
        await self._deliver(channel, data)

    @abc.abstractmethod
    async def _publish_remote(self, channel: str, data: bytes) -> bool: ...

    @abc.abstractmethod
    async def _subscribe_remote(self, channel: str) -> None: ...

    @abc.abstractmethod
    async def _unsubscribe_remote(self, channel: str) -> None: ...


def _log_hook_failure(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("bus on_reconnect hook failed", exc_info=exc)
