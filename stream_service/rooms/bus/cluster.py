"""The room bus on a Redis Cluster (``BUS_MODE=cluster``): ElastiCache Serverless, or a
self-managed cluster of masters (Valkey / Redis OSS 7+).

Sharded pub/sub, as a cluster serves it: a room's channel lives in the hash slot of its
name (``rtai:room:<id>``, no hash tag, so rooms spread over every shard), a publication
is an ``SPUBLISH`` to the master that owns the slot (redis-py's
:class:`~redis.asyncio.cluster.RedisCluster` routes it and follows ``MOVED`` / ``ASK``),
and this node reads each master's channels on a connection of its own (one
:class:`~stream_service.rooms.bus.link.PubSubLink` per master it has rooms on), with one
``SSUBSCRIBE`` per slot (at most ``BUS_SUBSCRIBE_CHUNK`` channels each: a request is
capped at 3,999 arguments). ElastiCache Serverless presents one virtual shard that owns
every slot, so there it is one connection and one endpoint, as with one server.

A supervisor keeps the slot map: every ``BUS_PING_S`` it puts each channel on the link of
its slot's owner (a slot that moved, a failover that promoted a replica); a link whose
session failed (the master went away, ``MOVED``, a shard channel the server dropped
because its slot moved) asks it to re-read the map (``CLUSTER SLOTS``) before it
reconnects. With no room at all, the supervisor pings the cluster so an outage is seen.

State: ``connected`` while the slot map is known and every link is up; a link that fails
makes the bus ``disconnected`` (health, ``rtai_bus_connected`` 0, an outage) until every
link is up again, then the ``on_reconnect`` hooks run (presence re-announced). Rooms on
the other masters keep flowing meanwhile; a publication to a master that is down fails at
once (False) instead of waiting on its connect timeout.

Commands: SPUBLISH, SSUBSCRIBE, SUNSUBSCRIBE, PING, CLUSTER SLOTS and the COMMAND
redis-py reads its key specs with; no keys are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from stream_service.rooms.bus.base import Bus, BusHealth, BusMetrics, BusState
from stream_service.rooms.bus.link import PubSubLink
from stream_service.rooms.bus.redis import connection_options, no_retry
from stream_service.rooms.bus.wire import Wire

log = logging.getLogger("rtai.rooms.bus")

# The slot map is read again this often even when nothing failed (a slot that moved
# without a client noticing: its rooms then follow within this long).
MAP_REFRESH_S = 30.0


class ClusterBus(Bus):
    kind = "redis-cluster"

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
        self._wire = Wire(prefix, node_id)
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._ping_s = ping_s
        self._subscribe_timeout_s = subscribe_timeout_s
        self._chunk = subscribe_chunk
        options = connection_options(connect_timeout_s, ping_s)
        # Topology and publications. One retry: after a connection error redis-py re-reads
        # the slot map and tries once more (a failover), then the publication is lost
        # (at-most-once) rather than stalling the reply that sent it.
        self._url = url
        self._options = options
        self._cluster = self._new_cluster()
        # What a link's own connection to one master takes: the URL's credentials and TLS,
        # no retries inside redis-py (a failure must reach the link).
        url_options: dict[str, Any] = dict(parse_url(url))
        for name in ("host", "port", "db", "path"):
            url_options.pop(name, None)
        self._link_options = {**url_options, **options, "retry": no_retry()}
        self._links: dict[str, PubSubLink] = {}  # master "host:port" -> its link
        self._home: dict[str, str] = {}  # channel -> the master whose link holds it
        self._down: dict[str, float] = {}  # master -> until when publications skip it
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._refresh = False  # re-read the slot map on the next pass
        self._reachable = False  # the last pass read the map / pinged the cluster
        self._map_read_at = 0.0
        self._unhomed = 0  # channels whose slot had no owner on the last pass
        self.last_error: str | None = None  # why the last supervisor pass failed
        self._supervisor: asyncio.Task[None] | None = None
        self._connections = 0
        self._closing = False

    def _new_cluster(self) -> RedisCluster:
        return RedisCluster.from_url(
            self._url, retry=Retry(NoBackoff(), 1), require_full_coverage=False, **self._options
        )

    @property
    def shared(self) -> bool:
        return True

    def health(self) -> BusHealth:
        links = list(self._links.values())
        up = sum(1 for link in links if link.up)
        health = super().health().with_detail(shards={"up": up, "down": len(links) - up})
        waiting = sum(link.waiting() for link in links)
        return health.with_detail(resubscribing=waiting) if waiting else health

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self, wait_s: float | None = None) -> None:
        """Start the supervisor; wait up to ``wait_s`` (default: the subscribe timeout) for
        the cluster. A node starts even if the cluster is down (health says so)."""
        if self._supervisor is not None:
            return
        self._set_state(BusState.CONNECTING)
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name=f"bus-cluster-{self.node_id}"
        )
        await self._wait_connected(self._subscribe_timeout_s if wait_s is None else wait_s)

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
            self._supervisor = None
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()
        with contextlib.suppress(Exception):
            await self._cluster.aclose()
        self._set_state(BusState.CLOSED)

    # --- the supervisor ---------------------------------------------------------------------
    async def _supervise(self) -> None:
        backoff = self._reconnect_min_s
        while not self._closing:
            failed = False
            try:
                await self._reconcile()
                if not self._links:  # no link to notice an outage: ask the cluster
                    await self._cluster.ping()
                self._reachable = True
                backoff = self._reconnect_min_s
                wait = self._ping_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._reachable or self._state is BusState.CONNECTING:
                    log.warning("room bus cluster unreachable: %s", exc)
                self._reachable = False
                self._refresh = True
                self.last_error = str(exc)
                failed = True
                if not self._cluster.nodes_manager.startup_nodes:
                    # A map read from a cluster still forming (no slots yet) leaves redis-py
                    # with no node to ask again: start over from BUS_URL.
                    with contextlib.suppress(Exception):
                        await self._cluster.aclose()
                    self._cluster = self._new_cluster()
                wait = backoff * (0.5 + random.random() / 2)
                backoff = min(backoff * 2, self._reconnect_max_s)
            self._update_state(failed=failed or bool(self._unhomed))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    async def _reconcile(self, *, close_empty: bool = True) -> None:
        """Read the slot map if asked to, then put every channel on its owner's link."""
        async with self._lock:
            await self._cluster.initialize()  # the first time, or after redis-py reset it
            now = time.monotonic()
            if self._refresh or now >= self._map_read_at + MAP_REFRESH_S:
                self._refresh = False
                self._map_read_at = now
                await self._cluster.nodes_manager.initialize()
            unhomed = 0
            for channel in list(self._subs):
                owner = self._owner(channel)
                home = self._home.get(channel)
                if owner is None:  # a slot nobody owns in this map (a cluster forming)
                    unhomed += 1
                    continue
                if owner == home:
                    continue
                if home is not None and home in self._links:
                    await self._links[home].remove(channel)
                self._home[channel] = owner
                await self._link(owner).add(channel, wait=False)
            if close_empty:
                for name, link in list(self._links.items()):
                    if not link.channels:
                        del self._links[name]
                        await link.close()
            if unhomed and not self._unhomed:
                log.warning("room bus: %d channels' slots have no owner in the map", unhomed)
            self._unhomed = unhomed
            if unhomed:
                self._refresh = True  # read the map again on the next pass

    def _owner(self, channel: str) -> str | None:
        """The master that owns ``channel``'s slot now (None: the map has no owner)."""
        slot = key_slot(self._wire.key(channel).encode())
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(slot)
        except Exception:  # SlotNotCoveredError, or no map yet
            return None
        return str(node.name)

    def _link(self, name: str) -> PubSubLink:
        link = self._links.get(name)
        if link is None:
            host, _, port = name.rpartition(":")
            pool = ConnectionPool(host=host, port=int(port), **self._link_options)
            link = PubSubLink(
                Redis.from_pool(pool),
                self._wire,
                name,
                sharded=True,
                on_message=self._receive_remote,
                on_change=self._link_changed,
                before_retry=self._before_link_retry,
                chunk=self._chunk,
                ping_s=self._ping_s,
                reconnect_min_s=self._reconnect_min_s,
                reconnect_max_s=self._reconnect_max_s,
                subscribe_timeout_s=self._subscribe_timeout_s,
            )
            self._links[name] = link
            link.start()
        return link

    async def _before_link_retry(self, link: PubSubLink) -> None:
        """A link's session failed: re-read the slot map before it reconnects, so a
        channel whose slot moved is subscribed at its new owner."""
        self._refresh = True
        await self._reconcile(close_empty=False)

    def _link_changed(self, link: PubSubLink) -> None:
        if link.up:
            self._down.pop(link.name, None)
        else:
            self._down[link.name] = float("inf")  # until the link is up again
            self._wake.set()
        self._update_state(failed=not link.up)

    def _update_state(self, *, failed: bool) -> None:
        if self._closing:
            return
        links_up = all(link.up for link in self._links.values())
        if self._reachable and not self._unhomed and links_up:
            if self._state is not BusState.CONNECTED:
                self._connections += 1
                self._set_state(BusState.CONNECTED)
                if self._connections > 1:
                    self.metrics.reconnects.inc()
                    log.info("room bus reconnected, %d channels resubscribed", len(self._subs))
                    self._run_reconnect_hooks()
        elif failed:
            self._set_state(BusState.DISCONNECTED)

    # --- remote side of publish / subscribe -----------------------------------------------
    async def _publish_remote(self, channel: str, data: bytes) -> bool:
        owner = self._owner(channel)
        if not self._reachable or (owner is not None and self._is_down(owner)):
            self.metrics.publish_failures.inc()
            return False
        try:
            await self._cluster.spublish(self._wire.key(channel), self._wire.encode(data))
        except Exception as exc:
            self.metrics.publish_failures.inc()
            log.debug("room bus publish to %s failed: %r", channel, exc)
            if owner is not None:  # skip that master for a while; re-read the map
                self._down.setdefault(owner, time.monotonic() + self._reconnect_max_s)
            self._refresh = True
            self._wake.set()
            return False
        self.metrics.published.inc()
        return True

    def _is_down(self, name: str) -> bool:
        until = self._down.get(name)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._down[name]
        return False

    async def _subscribe_remote(self, channel: str) -> None:
        owner = self._owner(channel)
        if owner is None:  # no slot map yet: the supervisor subscribes it once it has one
            self._wake.set()
            return
        self._home[channel] = owner
        await self._link(owner).add(channel)

    async def _unsubscribe_remote(self, channel: str) -> None:
        home = self._home.pop(channel, None)
        link = self._links.get(home) if home is not None else None
        if link is None:
            return
        await link.remove(channel)
        if not link.channels and self._links.get(link.name) is link:
            del self._links[link.name]
            await link.close()
