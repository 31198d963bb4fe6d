"""The Redis/Valkey bus (``BUS_URL``): one pub/sub connection per node, publications
through a small connection pool.

The listener task never dies quietly: any error on the pub/sub connection (the server
restarted, a half-open socket that stopped answering pings, a protocol error) ends the
session, marks the bus ``disconnected`` (metrics ``rtai_bus_connected`` 0,
``rtai_bus_outages`` +1, health), and a new session is tried with exponential backoff and
jitter. A new session subscribes every channel this node holds, then runs the
``on_reconnect`` hooks (the room service re-announces presence from there).

While the bus is down, publications still reach this node's own subscribers; other
nodes miss them (``publish`` returns False at once, without waiting on a connect timeout).

Only PUBLISH, SUBSCRIBE, UNSUBSCRIBE and PING are used (no keys, nothing a cluster-mode
endpoint such as ElastiCache Serverless would redirect); tested here against a single
redis-server only.

On the wire each publication is ``<node id> NUL <data>`` on ``<prefix><channel>``, so a
node skips its own publications (it delivered them locally already).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from stream_service.rooms.bus.base import Bus, BusMetrics, BusState

log = logging.getLogger("rtai.rooms.bus")

_SEP = b"\x00"


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
    ) -> None:
        super().__init__(node_id, metrics)
        self._url = url
        self._prefix = prefix
        self._origin = node_id.encode() + _SEP
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._ping_s = ping_s
        self._subscribe_timeout_s = subscribe_timeout_s
        options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": max(connect_timeout_s, 3 * ping_s),
            "socket_keepalive": True,
            "health_check_interval": 0,
        }
        # The pub/sub connection: no retries inside redis-py. A failure must reach our loop
        # (which reconnects, resubscribes and tells the hooks), not be papered over.
        self._sub_client: Redis = Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        # Publications: one retry, so a pooled connection left stale by a Redis restart is
        # reconnected in place instead of losing the first publication after it.
        self._client: Redis = Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Event] = {}
        self._sessions = 0
        self._session_up = False
        self._closing = False

    @property
    def shared(self) -> bool:
        return True

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self, wait_s: float | None = None) -> None:
        """Start the listener; wait up to ``wait_s`` (default: the subscribe timeout) for
        the first connection. A node starts even if Redis is down (health says so)."""
        if self._listener is not None:
            return
        self._set_state(BusState.CONNECTING)
        self._listener = asyncio.get_running_loop().create_task(
            self._run(), name=f"bus-listener-{self.node_id}"
        )
        deadline = asyncio.get_running_loop().time() + (
            self._subscribe_timeout_s if wait_s is None else wait_s
        )
        while self._state is not BusState.CONNECTED:
            if asyncio.get_running_loop().time() >= deadline or self._listener.done():
                break
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        for client in (self._client, self._sub_client):
            with contextlib.suppress(Exception):
                await client.aclose()
        self._set_state(BusState.CLOSED)

    # --- the listener ----------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self._reconnect_min_s
        while not self._closing:
            self._session_up = False
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure means: reconnect (never die quietly)
                if self._state is not BusState.DISCONNECTED:
                    log.warning("room bus %s lost: %r; reconnecting", self._url_for_log(), exc)
            if self._closing:
                return
            self._set_state(BusState.DISCONNECTED)
            if self._session_up:
                backoff = self._reconnect_min_s
            delay = backoff * (0.5 + random.random() / 2)
            backoff = min(backoff * 2, self._reconnect_max_s)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        """One pub/sub connection's life; it only ends by raising."""
        pubsub = self._sub_client.pubsub()
        try:
            for event in self._confirmed.values():
                event.clear()
            # Set before the channel list is read: a subscribe() from now on goes to this
            # connection itself, so no channel falls between two sessions.
            self._pubsub = pubsub
            # Our own control channel keeps the connection in subscribed mode even with no
            # rooms, so pings are answered in-band and an outage is always seen.
            channels = [self._key(f"node:{self.node_id}")]
            channels += [self._key(c) for c in self._subs]
            await pubsub.subscribe(*channels)
            loop = asyncio.get_running_loop()
            last_rx = last_ping = loop.time()
            while True:
                message = await pubsub.get_message(timeout=self._ping_s)
                now = loop.time()
                if message is not None:
                    last_rx = now
                    if not self._session_up and message["type"] == "subscribe":
                        self._up()
                    await self._handle(message)
                if now - last_rx > 3 * self._ping_s:
                    raise TimeoutError("room bus: no answer to pings")
                if now - last_rx >= self._ping_s and now - last_ping >= self._ping_s:
                    last_ping = now
                    await pubsub.ping()
        finally:
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _up(self) -> None:
        self._session_up = True
        self._sessions += 1
        self._set_state(BusState.CONNECTED)
        if self._sessions > 1:
            self.metrics.reconnects.inc()
            log.info("room bus reconnected, %d channels resubscribed", len(self._subs))
            self._run_reconnect_hooks()

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            data: bytes = message["data"]
            origin, sep, payload = data.partition(_SEP)
            if not sep or origin == self._origin[:-1]:
                return
            channel = self._channel(message["channel"])
            if channel is None:
                return
            self.metrics.received.inc()
            await self._deliver(channel, payload)
        elif kind == "subscribe":
            channel = self._channel(message["channel"])
            if channel is not None:
                self._confirmed.setdefault(channel, asyncio.Event()).set()

    # --- remote side of publish / subscribe -----------------------------------------------
    async def _publish_remote(self, channel: str, data: bytes) -> bool:
        if self._state is not BusState.CONNECTED:
            self.metrics.publish_failures.inc()
            return False
        try:
            await self._client.publish(self._key(channel), self._origin + data)
        except Exception as exc:
            self.metrics.publish_failures.inc()
            log.debug("room bus publish to %s failed: %r", channel, exc)
            return False
        self.metrics.published.inc()
        return True

    async def _subscribe_remote(self, channel: str) -> None:
        event = self._confirmed.setdefault(channel, asyncio.Event())
        event.clear()
        pubsub = self._pubsub
        if pubsub is None:
            return  # between sessions: the next one subscribes it
        try:
            await pubsub.subscribe(self._key(channel))
        except Exception as exc:  # the listener sees the outage and resubscribes all
            log.debug("room bus subscribe %s failed: %r", channel, exc)
            return
        if self._state is not BusState.CONNECTED:
            return
        try:
            await asyncio.wait_for(event.wait(), self._subscribe_timeout_s)
        except TimeoutError:
            log.warning(
                "room bus: no confirmation for %s within %.1fs",
                channel,
                self._subscribe_timeout_s,
            )

    async def _unsubscribe_remote(self, channel: str) -> None:
        self._confirmed.pop(channel, None)
        pubsub = self._pubsub
        if pubsub is None or self._state is not BusState.CONNECTED:
            return
        with contextlib.suppress(Exception):
            await pubsub.unsubscribe(self._key(channel))

    # --- names -----------------------------------------------------------------------------
    def _key(self, channel: str) -> str:
        return self._prefix + channel

    def _channel(self, raw: bytes | str) -> str | None:
        name = raw.decode() if isinstance(raw, bytes) else raw
        if not name.startswith(self._prefix):
            return None
        channel = name[len(self._prefix) :]
        return None if channel.startswith("node:") else channel

    def _url_for_log(self) -> str:
        scheme, _, rest = self._url.partition("://")
        return f"{scheme}://{rest.rpartition('@')[2]}"
