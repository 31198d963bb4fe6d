"""The one-server bus with thousands of rooms, and what ``/stream/healthz`` says about the
bus, against a real redis-server.

A node that lost its pub/sub connection subscribes every room again; a request is capped
at 3,999 arguments on ElastiCache, so it does so in chunks (``BUS_SUBSCRIBE_CHUNK``).
A node whose bus is down keeps serving (its streams, and resume, are in the store): its
health check answers 200 with ``degraded`` and the bus's state, never a plain ``ok``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from stream_service.rooms.bus.base import BusMetrics
from stream_service.rooms.bus.redis import RedisBus
from stream_service.rooms.bus.wire import MAX_CHANNELS_PER_COMMAND
from tests.integration.rooms.test_bus_redis import Inbox, wait_until
from tests.support.redis import RedisServer
from tests.support.servers import ProcessServer, wait_http

pytestmark = pytest.mark.slow


async def watch_subscribes(url: str, seen: list[list[str]], ready: asyncio.Event) -> None:
    """Every SUBSCRIBE the server runs (MONITOR), as its list of channels."""
    client = Redis.from_url(url)
    try:
        async with client.monitor() as monitor:
            ready.set()
            while True:
                command = (await monitor.next_command())["command"]
                if command.startswith("SUBSCRIBE "):
                    seen.append(command.split()[1:])
    finally:
        await client.aclose()


async def test_thousands_of_rooms_are_resubscribed_in_chunks(redis_server: RedisServer) -> None:
    rooms = 5000  # one SUBSCRIBE of them all would carry 5,002 arguments
    # pings every second: the test's own loop is busy with 5,000 rooms at times
    bus, other = (
        RedisBus(redis_server.url, name, BusMetrics(), reconnect_min_s=0.05, ping_s=1.0)
        for name in ("many", "other")
    )
    seen: list[list[str]] = []
    ready = asyncio.Event()
    watcher = asyncio.ensure_future(watch_subscribes(redis_server.url, seen, ready))
    admin = Redis.from_url(redis_server.url)
    try:
        await bus.start()
        await other.start()
        inbox = Inbox()
        for i in range(rooms):
            await bus.subscribe(f"room:many-{i}", inbox)
        await asyncio.wait_for(ready.wait(), 5)
        seen.clear()
        # drop the node's pub/sub connection (what a server restart or a network cut does)
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await wait_until(lambda: bus.metrics.reconnects._value.get() >= 1, within=20)

        wanted = {f"rtai:room:many-{i}" for i in range(rooms)}

        def missing() -> set[str]:
            return wanted - {c for command in seen for c in command}

        await wait_until(lambda: not missing(), within=20)  # MONITOR's feed may lag
        sizes = [len(command) for command in seen]
        assert len(sizes) >= 5, sizes  # BUS_SUBSCRIBE_CHUNK (1,000) channels a command
        assert max(sizes) <= 1000 < MAX_CHANNELS_PER_COMMAND, sizes
        assert bus.health().as_dict()["state"] == "connected"

        await wait_until(lambda: other.connected)  # its pub/sub connection was cut too
        for i in range(rooms):
            assert await other.publish(f"room:many-{i}", f"m{i}".encode()) is True
        await wait_until(lambda: len(inbox.items) >= rooms, within=30)
        assert sorted(inbox.payloads()) == sorted(f"m{i}".encode() for i in range(rooms))
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
        await admin.aclose()
        await bus.close()
        await other.close()


def health(node: ProcessServer) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{node.url}/stream/healthz", timeout=5)
    return response.status_code, response.json()


def test_healthz_shows_the_bus_down_as_degraded_and_stays_200() -> None:
    redis = RedisServer()  # not started yet: its port refuses connections
    env = {
        "STREAM_STORE": "memory",
        "LLM_PROVIDER": "local",
        "BUS_URL": redis.url,
        "BUS_RECONNECT_MIN_S": "0.05",
        "BUS_RECONNECT_MAX_S": "0.3",
        "BUS_PING_S": "0.3",
    }
    node = ProcessServer("stream_service", env, health="/stream/healthz")
    try:
        try:
            node.start()
        except TimeoutError:  # a loaded machine (2 shared cores): give it longer
            wait_http(node.url + node.health, timeout=60)
        status, body = health(node)
        assert status == 200, body  # the ALB keeps the node: its streams go on
        assert body["status"] == "degraded"
        assert body["bus"]["kind"] == "redis"
        assert body["bus"]["state"] in ("connecting", "disconnected")

        redis.start()
        try:
            deadline = time.monotonic() + 20
            while (body := health(node)[1])["status"] != "ok":
                assert time.monotonic() < deadline, body
                time.sleep(0.1)
            assert body["bus"]["state"] == "connected"

            redis.stop()  # an outage after a connection: degraded again, with its length
            deadline = time.monotonic() + 20
            while (body := health(node)[1])["status"] != "degraded":
                assert time.monotonic() < deadline, body
                time.sleep(0.1)
            assert body["bus"]["state"] == "disconnected" and body["bus"]["outages"] >= 1
        finally:
            redis.stop()
    finally:
        node.stop()
