"""The Redis/Valkey bus on one server (``BUS_URL``, ``BUS_MODE=standalone``): one pub/sub
connection per node (a :class:`~stream_service.rooms.bus.link.PubSubLink`), publications
through a small connection pool.

The link never dies quietly: any error on the pub/sub connection (the server restarted,
a half-open socket that stopped answering pings, a protocol error) ends the session,
marks the bus ``disconnected`` (metrics ``rtai_bus_connected`` 0, ``rtai_bus_outages``
+1, health), and a new session is tried with exponential backoff and jitter. A new
session subscribes every channel this node holds, ``BUS_SUBSCRIBE_CHUNK`` channels per
``SUBSCRIBE``, then runs the ``on_reconnect`` hooks (the room service re-announces
presence from there).

While the bus is down, publications still reach this node's own subscribers; other
nodes miss them (``publish`` returns False at once, without waiting on a connect timeout).

Only PUBLISH, SUBSCRIBE, UNSUBSCRIBE and PING are used. A cluster (ElastiCache
Serverless) takes :class:`~stream_service.rooms.bus.cluster.ClusterBus` instead.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stream_service.rooms.bus.base import Bus, BusHealth, BusMetrics, BusState
from stream_service.rooms.bus.link import PubSubLink
from stream_service.rooms.bus.wire import Wire

log = logging.getLogger("rtai.rooms.bus")


def no_retry() -> Retry:
    """For a pub/sub connection: a failure ends the session, nothing else. (redis-py's
    failure callback would otherwise reconnect in place, even with zero retries, and
    resubscribe every channel in one command: past 3,999 channels ElastiCache refuses it,
    and on a cluster it is one SSUBSCRIBE across slots, refused too.)"""
    return Retry(NoBackoff(), 0, supported_errors=())


def connection_options(connect_timeout_s: float, ping_s: float) -> dict[str, Any]:
    """Socket options of every bus connection: a read that takes three ping intervals is
    an outage; redis-py's own health checks are off (the link pings)."""
    return {
        "socket_connect_timeout": connect_timeout_s,
        "socket_timeout": max(connect_timeout_s, 3 * ping_s),
        "socket_keepalive": True,
        "health_check_interval": 0,
    }


class RedisBus(Bus):
    kind = "redis"

    def __init__(
        self,
        url: str,
        node_id: str,
        metrics: BusMetrics | None = None,
        *,
        prefix: str = "rtai:",
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        ping_s: float = 1.0,
        subscribe_timeout_s: float = 2.0,
        connect_timeout_s: float = 2.0,
        subscribe_chunk: int = 1000,
    ) -> None:
        super().__init__(node_id, metrics)
        self._url = url
        self._wire = Wire(prefix, node_id)
        self._subscribe_timeout_s = subscribe_timeout_s
        options = connection_options(connect_timeout_s, ping_s)
        # Publications: one retry, so a pooled connection left stale by a Redis restart is
        # reconnected in place instead of losing the first publication after it.
        self._client: Redis = Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        # The pub/sub connection: no retries inside redis-py. A failure must reach the
        # link (which reconnects, resubscribes and tells us), not be papered over.
        self._link = PubSubLink(
            Redis.from_url(url, retry=no_retry(), **options),
            self._wire,
            _url_for_log(url),
            sharded=False,
            control=True,  # pings are answered in-band even with no rooms
            on_message=self._receive_remote,
            on_change=self._link_changed,
            chunk=subscribe_chunk,
            ping_s=ping_s,
            reconnect_min_s=reconnect_min_s,
            reconnect_max_s=reconnect_max_s,
            subscribe_timeout_s=subscribe_timeout_s,
        )
        self._started = False

    @property
    def shared(self) -> bool:
        return True

    def health(self) -> BusHealth:
        health = super().health()
        if self._link.waiting():
            return health.with_detail(resubscribing=self._link.waiting())
        return health

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self, wait_s: float | None = None) -> None:
        """Start the link; wait up to ``wait_s`` (default: the subscribe timeout) for the
        first connection. A node starts even if Redis is down (health says so)."""
        if self._started:
            return
        self._started = True
        self._set_state(BusState.CONNECTING)
        self._link.start()
        await self._wait_connected(self._subscribe_timeout_s if wait_s is None else wait_s)

    async def close(self) -> None:
        await self._link.close()
        try:
            await self._client.aclose()
        except Exception:  # pragma: no cover - closing a broken pool
            log.debug("room bus: closing the publish pool failed", exc_info=True)
        self._set_state(BusState.CLOSED)

    def _link_changed(self, link: PubSubLink) -> None:
        if self._state is BusState.CLOSED:
            return
        if link.up:
            self._set_state(BusState.CONNECTED)
            if link.sessions > 1:
                self.metrics.reconnects.inc()
                log.info("room bus reconnected, %d channels resubscribed", len(self._subs))
                self._run_reconnect_hooks()
        else:
            if self._state is not BusState.DISCONNECTED:
                log.warning("room bus %s lost: %s", link.name, link.last_error)
            self._set_state(BusState.DISCONNECTED)

    # --- remote side of publish / subscribe -----------------------------------------------
    async def _publish_remote(self, channel: str, data: bytes) -> bool:
        if self._state is not BusState.CONNECTED:
            self.metrics.publish_failures.inc()
            return False
        try:
            await self._client.publish(self._wire.key(channel), self._wire.encode(data))
        except Exception as exc:
            self.metrics.publish_failures.inc()
            log.debug("room bus publish to %s failed: %r", channel, exc)
            return False
        self.metrics.published.inc()
        return True

    async def _subscribe_remote(self, channel: str) -> None:
        await self._link.add(channel)

    async def _unsubscribe_remote(self, channel: str) -> None:
        await self._link.remove(channel)


def _url_for_log(url: str) -> str:
    """``url`` without its credentials."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"
