"""The Redis bus against a real redis-server: two buses are two nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from stream_service.rooms.bus.base import BusMetrics, BusState
from stream_service.rooms.bus.redis import RedisBus
from tests.support.redis import RedisServer

pytestmark = pytest.mark.slow


class Inbox:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []
        self.changed = asyncio.Event()

    async def __call__(self, channel: str, data: bytes) -> None:
        self.items.append((channel, data))
        self.changed.set()

    async def wait_for(self, data: bytes, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not any(d == data for _, d in self.items):
                self.changed.clear()
                await self.changed.wait()

    def payloads(self) -> list[bytes]:
        return [d for _, d in self.items]


def make_bus(url: str, node: str) -> RedisBus:
    return RedisBus(url, node, BusMetrics(), reconnect_min_s=0.05, reconnect_max_s=0.5, ping_s=0.3)


@pytest.fixture
async def two_nodes(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    a, b = make_bus(redis_server.url, "a"), make_bus(redis_server.url, "b")
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def wait_until(check: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.02)


async def test_publication_reaches_the_other_node_and_local_subscribers_once(
    two_nodes: tuple[RedisBus, RedisBus],
) -> None:
    a, b = two_nodes
    assert a.connected and b.connected
    on_a, on_b = Inbox(), Inbox()
    await a.subscribe("room:1", on_a)
    await b.subscribe("room:1", on_b)
    assert await b.publish("room:1", b"hello") is True
    await on_a.wait_for(b"hello")
    await asyncio.sleep(0.2)  # a duplicate through Redis would arrive by now
    assert on_a.payloads() == [b"hello"]
    assert on_b.payloads() == [b"hello"]  # local delivery, not echoed back through Redis


async def test_subscribe_then_publish_immediately_is_not_lost(
    two_nodes: tuple[RedisBus, RedisBus],
) -> None:
    """subscribe() returns once Redis confirmed the channel: a reader may read its backlog
    right after and miss nothing published from then on."""
    a, b = two_nodes
    for i in range(20):
        inbox = Inbox()
        sub = await a.subscribe(f"fresh:{i}", inbox)
        await b.publish(f"fresh:{i}", b"x")
        await inbox.wait_for(b"x", within=2)
        await a.unsubscribe(sub)


async def test_unsubscribed_channel_stops_delivery_and_other_channels_are_separate(
    two_nodes: tuple[RedisBus, RedisBus],
) -> None:
    a, b = two_nodes
    one, two = Inbox(), Inbox()
    sub = await a.subscribe("c:1", one)
    await a.subscribe("c:2", two)
    await b.publish("c:1", b"m1")
    await one.wait_for(b"m1")
    await a.unsubscribe(sub)
    await b.publish("c:1", b"m2")
    await b.publish("c:2", b"m3")
    await two.wait_for(b"m3")
    assert one.payloads() == [b"m1"]
    assert two.payloads() == [b"m3"]


async def test_a_failing_handler_does_not_stop_delivery(
    two_nodes: tuple[RedisBus, RedisBus],
) -> None:
    a, b = two_nodes
    inbox = Inbox()

    async def broken(channel: str, data: bytes) -> None:
        raise RuntimeError("handler bug")

    await a.subscribe("h", broken)
    await a.subscribe("h", inbox)
    await b.publish("h", b"1")
    await b.publish("h", b"2")
    await inbox.wait_for(b"2")
    assert inbox.payloads() == [b"1", b"2"]
    assert a.metrics.handler_errors._value.get() == 2
    assert a.connected


async def test_redis_restart_mid_subscription_both_nodes_recover() -> None:
    server = RedisServer().start()
    a, b = make_bus(server.url, "a"), make_bus(server.url, "b")
    reconnected = {"a": 0, "b": 0}

    def hook(name: str) -> Callable[[], object]:
        async def on_reconnect() -> None:
            reconnected[name] += 1

        return on_reconnect

    a.on_reconnect(hook("a"))  # type: ignore[arg-type]
    b.on_reconnect(hook("b"))  # type: ignore[arg-type]
    try:
        await a.start()
        await b.start()
        on_a, on_b = Inbox(), Inbox()
        await a.subscribe("room:r", on_a)
        await b.subscribe("room:r", on_b)
        await a.publish("room:r", b"before")
        await on_b.wait_for(b"before")

        server.stop()  # SIGKILL: both pub/sub connections drop
        await wait_until(lambda: a.state is BusState.DISCONNECTED)
        await wait_until(lambda: b.state is BusState.DISCONNECTED)
        assert a.health().as_dict()["state"] == "disconnected"
        assert a.metrics.connected._value.get() == 0
        assert a.health().outages == 1
        # While Redis is down: local subscribers still get publications, others can't.
        assert await a.publish("room:r", b"during") is False
        assert on_a.payloads()[-1] == b"during"
        assert a.metrics.publish_failures._value.get() >= 1

        await asyncio.sleep(0.5)  # a few failed reconnect attempts with backoff
        await asyncio.to_thread(server.start)
        await wait_until(lambda: a.connected and b.connected)
        await wait_until(lambda: reconnected == {"a": 1, "b": 1})
        assert a.metrics.reconnects._value.get() == 1
        assert a.metrics.connected._value.get() == 1
        # Resubscribed on both sides, both directions flow again.
        await a.publish("room:r", b"after-a")
        await b.publish("room:r", b"after-b")
        await on_b.wait_for(b"after-a")
        await on_a.wait_for(b"after-b")
        assert b"during" not in on_b.payloads()  # at-most-once: the outage's publication is gone

        # A second restart works the same (the listener did not die after the first one).
        server.restart(down_s=0.2)
        await wait_until(lambda: reconnected == {"a": 2, "b": 2})
        await b.publish("room:r", b"again")
        await on_a.wait_for(b"again")
    finally:
        await a.close()
        await b.close()
        server.stop()


async def test_a_node_started_while_redis_is_down_connects_when_it_comes_up() -> None:
    server = RedisServer()  # not started: its port is free and refuses connections
    bus = make_bus(server.url, "late")
    other = make_bus(server.url, "other")
    try:
        await bus.start(wait_s=0.3)
        assert not bus.connected
        inbox = Inbox()
        await bus.subscribe("room:late", inbox)  # registered now, subscribed on connect
        await asyncio.to_thread(server.start)
        await wait_until(lambda: bus.connected)
        await other.start()
        await other.publish("room:late", b"hi")
        await inbox.wait_for(b"hi")
    finally:
        await bus.close()
        await other.close()
        server.stop()


async def test_a_silent_server_is_detected_by_pings() -> None:
    """A server that stops answering (SIGSTOP: the socket stays open) is an outage too."""
    server = RedisServer().start()
    bus = make_bus(server.url, "p")
    try:
        await bus.start()
        assert bus.connected
        assert server.proc is not None
        server.proc.send_signal(19)  # SIGSTOP
        await wait_until(lambda: bus.state is BusState.DISCONNECTED, within=5)
        server.proc.send_signal(18)  # SIGCONT
        await wait_until(lambda: bus.connected, within=10)
    finally:
        await bus.close()
        server.stop()
