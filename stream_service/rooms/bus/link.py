"""One pub/sub connection of a Redis bus and its sessions: the shared part of the
one-server bus (one link, ``SUBSCRIBE``) and the cluster bus (one link per master that
owns a channel of this node, ``SSUBSCRIBE``).

A session connects, subscribes every channel of the link in chunks (at most
``chunk`` channels per command; for sharded pub/sub one slot per command), then reads.
It never ends quietly: any error (the server went away, a half-open socket that stopped
answering pings, ``MOVED`` for a slot that changed hands, a shard channel the server
unsubscribed because its slot moved) ends it, the link goes down, and a new session is
tried with exponential backoff and jitter. The link is *up* once the server confirmed
every channel the session started with: from then on nothing published is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from stream_service.rooms.bus.wire import Wire, chunks, slot_chunks

log = logging.getLogger("rtai.rooms.bus")

Receive = Callable[[str, bytes], Awaitable[None]]  # (bus channel, payload)
Changed = Callable[["PubSubLink"], None]
BeforeRetry = Callable[["PubSubLink"], Awaitable[None]]


class ChannelMoved(Exception):
    """The server unsubscribed a shard channel we still want (its slot moved)."""


class PubSubLink:
    def __init__(
        self,
        client: Redis,
        wire: Wire,
        name: str,
        *,
        sharded: bool,
        on_message: Receive,
        on_change: Changed,
        before_retry: BeforeRetry | None = None,
        control: bool = False,
        chunk: int = 1000,
        ping_s: float = 1.0,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        subscribe_timeout_s: float = 2.0,
    ) -> None:
        self.client = client
        self.wire = wire
        self.name = name
        self.sharded = sharded
        self.channels: set[str] = set()
        self.up = False
        # sessions that came up (the first one is the connection, later ones reconnects)
        self.sessions = 0
        self.last_error: str | None = None
        self._on_message = on_message
        self._on_change = on_change
        self._before_retry = before_retry
        self._control = control
        self._chunk = chunk
        self._ping_s = ping_s
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._subscribe_timeout_s = subscribe_timeout_s
        self._confirmed: dict[str, asyncio.Event] = {}
        self._pending: set[str] = set()  # keys the session started with, not confirmed yet
        self._leaving: set[str] = set()  # keys we unsubscribed ourselves
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failing = False  # the last session failed and no new one has started yet
        self._types = (
            ("smessage", "ssubscribe", "sunsubscribe")
            if sharded
            else ("message", "subscribe", "unsubscribe")
        )

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"bus-link-{self.name}"
            )

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.client.aclose()
        self.up = False  # closed on purpose: not an outage, nobody is told

    # --- channels --------------------------------------------------------------------------
    async def add(self, channel: str, *, wait: bool = True) -> None:
        """Subscribe ``channel`` now if connected (else the next session does); with
        ``wait``, return once the server confirmed it (or the confirmation timed out)."""
        self.channels.add(channel)
        event = self._confirmed.setdefault(channel, asyncio.Event())
        event.clear()
        key = self.wire.key(channel)
        self._leaving.discard(key)
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                await self._subscribe(pubsub, [key])
            except Exception as exc:  # the session sees the failure and resubscribes all
                log.debug("room bus subscribe %s on %s failed: %r", channel, self.name, exc)
                return
        # else the session starting now subscribes it with the rest
        if not wait or self._failing:
            return  # down (backing off): the next session subscribes it
        try:
            await asyncio.wait_for(event.wait(), self._subscribe_timeout_s)
        except TimeoutError:
            log.warning(
                "room bus: no confirmation for %s from %s within %.1fs",
                channel,
                self.name,
                self._subscribe_timeout_s,
            )

    async def remove(self, channel: str) -> None:
        self.channels.discard(channel)
        self._confirmed.pop(channel, None)
        pubsub = self._pubsub
        if pubsub is None or not self.up:
            return
        key = self.wire.key(channel)
        self._leaving.add(key)
        with contextlib.suppress(Exception):
            if self.sharded:
                await pubsub.sunsubscribe(key)
            else:
                await pubsub.unsubscribe(key)

    # --- sessions --------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self._reconnect_min_s
        while not self._closing:
            if self.sharded and not self.channels:  # nothing to read: its owner closes it
                await asyncio.sleep(self._ping_s)
                continue
            came_up = self.sessions
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure means: reconnect (never die quietly)
                self.last_error = repr(exc)
                if self.up:
                    log.warning("room bus link %s lost: %r; reconnecting", self.name, exc)
            if self._closing:
                return
            self.up = False
            self._failing = True
            self._on_change(self)  # every failed session, the first connection's too
            if self.sessions > came_up:
                backoff = self._reconnect_min_s
            delay = backoff * (0.5 + random.random() / 2)
            backoff = min(backoff * 2, self._reconnect_max_s)
            await asyncio.sleep(delay)
            if self._before_retry is not None:
                with contextlib.suppress(Exception):
                    await self._before_retry(self)

    async def _session(self) -> None:
        """One pub/sub connection's life; it only ends by raising."""
        pubsub = self.client.pubsub()
        self._failing = False
        try:
            for event in self._confirmed.values():
                event.clear()
            self._leaving.clear()
            # Set before the channel list is read: an add() from now on goes to this
            # connection itself, so no channel falls between two sessions.
            self._pubsub = pubsub
            keys = [self.wire.key(c) for c in self.channels]
            if self._control:
                keys.insert(0, self.wire.control_key())
            self._pending = set(keys)
            await self._subscribe(pubsub, keys)
            if not keys:  # nothing to confirm: the connection itself is the proof
                await pubsub.ping()
            loop = asyncio.get_running_loop()
            last_rx = last_ping = loop.time()
            while True:
                message = await pubsub.get_message(timeout=self._ping_s)
                now = loop.time()
                if message is not None:
                    last_rx = now
                    await self._handle(message)
                if now - last_rx > 3 * self._ping_s:
                    raise TimeoutError(f"room bus link {self.name}: no answer to pings")
                if now - last_rx >= self._ping_s and now - last_ping >= self._ping_s:
                    last_ping = now
                    await pubsub.ping()
        finally:
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _subscribe(self, pubsub: PubSub, keys: list[str]) -> None:
        if self.sharded:
            for group in slot_chunks(keys, self._chunk):
                await pubsub.ssubscribe(*group)
        else:
            for group in chunks(keys, self._chunk):
                await pubsub.subscribe(*group)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        data_type, sub_type, unsub_type = self._types
        if kind == data_type:
            payload = self.wire.decode(message["data"])
            channel = self.wire.channel(message["channel"])
            if payload is not None and channel is not None:
                await self._on_message(channel, payload)
            return
        if kind == "pong":
            if not self._pending:
                self._set_up(True)
            return
        raw = message["channel"]
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        channel = self.wire.channel(key)
        if kind == sub_type:
            if channel is not None:
                self._confirmed.setdefault(channel, asyncio.Event()).set()
            self._pending.discard(key)
            if not self._pending:
                self._set_up(True)
        elif kind == unsub_type and self.sharded:
            if key in self._leaving:
                self._leaving.discard(key)
            elif channel in self.channels:
                raise ChannelMoved(f"{key} was unsubscribed by {self.name} (its slot moved)")

    def _set_up(self, up: bool) -> None:
        if up is self.up:
            return
        self.up = up
        if up:
            self.sessions += 1
            self.last_error = None
        self._on_change(self)

    def waiting(self) -> int:
        """Channels of the current session not confirmed yet."""
        return len(self._pending)
