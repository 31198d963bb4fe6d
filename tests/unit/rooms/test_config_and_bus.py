"""Room settings from the environment (SPEC section 2 names) and the bus they pick; the
in-process bus."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis.crc import key_slot

from stream_service.domain.ops.controller import Health, node_health
from stream_service.rooms.bus.base import BusHealth, BusState
from stream_service.rooms.bus.cluster import ClusterBus
from stream_service.rooms.bus.factory import build_bus
from stream_service.rooms.bus.memory import MemoryBus
from stream_service.rooms.bus.redis import RedisBus
from stream_service.rooms.bus.wire import chunks, slot_chunks
from stream_service.rooms.config import BusMode, RoomSettings


def test_spec_variables_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUS_URL", raising=False)
    monkeypatch.delenv("TYPING_TTL_S", raising=False)
    default = RoomSettings()
    assert default.bus_url is None and default.typing_ttl_s == 6
    monkeypatch.setenv("BUS_URL", "rediss://cache.example:6379/0")
    monkeypatch.setenv("TYPING_TTL_S", "2.5")
    monkeypatch.setenv("ROOM_MAX_MESSAGES", "10")
    s = RoomSettings()
    assert s.bus_url == "rediss://cache.example:6379/0"
    assert s.typing_ttl_s == 2.5 and s.room_max_messages == 10


@pytest.mark.parametrize(
    "env",
    [
        {"BUS_URL": "http://cache:6379"},
        {"TYPING_TTL_S": "0"},
        {"PRESENCE_HEARTBEAT_S": "2", "PRESENCE_TTL_S": "3"},
        {"ROOM_MAX_MESSAGE_BYTES": "600000"},
        {"BUS_MODE": "sharded"},
        {"BUS_MODE": "cluster", "BUS_URL": "unix:///run/redis.sock"},
        {"BUS_SUBSCRIBE_CHUNK": "3999"},  # with the command name: 4,000 arguments
        {"BUS_SUBSCRIBE_CHUNK": "0"},
    ],
)
def test_bad_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        RoomSettings()


def test_the_bus_follows_bus_url() -> None:
    assert isinstance(build_bus(RoomSettings(bus_url=None), "n"), MemoryBus)
    assert isinstance(build_bus(RoomSettings(bus_url=""), "n"), MemoryBus)
    bus = build_bus(RoomSettings(bus_url="redis://127.0.0.1:1/0"), "n")
    assert isinstance(bus, RedisBus) and bus.shared


def test_bus_mode_cluster_takes_the_sharded_cluster_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_URL", "rediss://bus-abc.serverless.use1.cache.amazonaws.com:6379")
    monkeypatch.setenv("BUS_MODE", "cluster")
    config = RoomSettings()
    assert config.bus_mode is BusMode.CLUSTER
    bus = build_bus(config, "n")
    assert isinstance(bus, ClusterBus) and bus.shared
    assert bus.health().as_dict()["kind"] == "redis-cluster"
    monkeypatch.delenv("BUS_MODE")
    assert RoomSettings().bus_mode is BusMode.STANDALONE  # the default


def test_slot_chunks_keep_each_subscribe_in_one_slot_and_under_the_argument_cap() -> None:
    keys = [f"rtai:room:{i}" for i in range(5000)] + [f"rtai:{{tag}}:{i}" for i in range(2500)]
    groups = list(slot_chunks(keys, 1000))
    assert sorted(k for g in groups for k in g) == sorted(keys)  # each key exactly once
    assert all(len({key_slot(k.encode()) for k in g}) == 1 for g in groups)  # no CROSSSLOT
    assert max(len(g) for g in groups) == 1000  # 2,500 keys of one slot: 3 commands
    assert [len(g) for g in chunks(keys, 3000)] == [3000, 3000, 1500]


def test_healthz_is_degraded_not_failing_while_the_bus_is_down() -> None:
    def bus(state: BusState) -> BusHealth:
        return BusHealth("redis", state, 0, 0.0)

    assert node_health(False, bus(BusState.CONNECTED)) is Health.OK
    for state in (BusState.DISCONNECTED, BusState.CONNECTING, BusState.CLOSED):
        assert node_health(False, bus(state)) is Health.DEGRADED
    assert node_health(True, bus(BusState.CONNECTED)) is Health.DRAINING


async def test_memory_bus_delivers_in_order_to_each_subscriber_until_unsubscribed() -> None:
    bus = MemoryBus("n1")
    await bus.start()
    assert bus.connected and not bus.shared
    got: list[tuple[str, bytes]] = []

    async def handler(channel: str, data: bytes) -> None:
        got.append((channel, data))

    sub = await bus.subscribe("a", handler)
    await bus.subscribe("b", handler)
    assert await bus.publish("a", b"1")
    await bus.publish("b", b"2")
    await bus.publish("c", b"nobody")
    await bus.unsubscribe(sub)
    await bus.publish("a", b"3")
    assert got == [("a", b"1"), ("b", b"2")]
    assert sorted(bus.channels()) == ["b"]
    await bus.close()
    assert bus.state is BusState.CLOSED
