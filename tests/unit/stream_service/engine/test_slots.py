"""Slots alone: per-user admission on the memory store (one write, 429 + Retry-After,
replace, dead nodes' holders evicted), and a cancelled create giving its slot back."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.errors import RateLimited
from core.providers.local import LocalProvider
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import StreamEngine
from stream_service.engine.slots import Slots
from stream_service.engine.types import StopReason
from stream_service.store import Holder
from stream_service.store.base import now_ms
from stream_service.store.memory import MemoryStore
from tests.unit.stream_service.engine.support import chat, recording_store, until


class _Stops:
    """The ``stop_anywhere`` callback, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, StopReason]] = []

    async def __call__(self, stream_id: str, reason: StopReason) -> None:
        self.calls.append((stream_id, reason))


def _slots(store: MemoryStore, *, limit: int, policy: str = "reject", node: str = "n1") -> Slots:
    return Slots(
        store, node=node, limit=limit, policy=policy, node_ttl_s=30, stop_anywhere=_Stops()
    )


def _stops(slots: Slots) -> _Stops:
    stops = slots._stop_anywhere
    assert isinstance(stops, _Stops)
    return stops


async def _is_held(store: MemoryStore, user: str, stream_id: str) -> bool:
    """Whether the user's record holds ``stream_id`` (released and given back if so)."""
    if await store.release(user, stream_id):
        await store.admit(user, Holder(stream_id, "n1", now_ms()), 10**6)
        return True
    return False


@pytest.mark.parametrize("active", [0, 5, 500])
async def test_admission_is_one_write_whatever_the_active_count(active: int) -> None:
    store, ops = recording_store()
    slots = _slots(store, limit=1000)
    for n in range(active):
        await slots.acquire("u", f"s{n}")
    ops.clear()
    await slots.acquire("u", "new")
    assert ops == ["admit"]
    assert await _is_held(store, "u", "new")


async def test_reject_at_the_limit_is_a_429_with_retry_after_and_holds_nothing() -> None:
    store, ops = recording_store()
    slots = _slots(store, limit=2)
    await slots.acquire("u", "a")
    await slots.acquire("u", "b")
    ops.clear()
    with pytest.raises(RateLimited) as refused:
        await slots.acquire("u", "c")
    assert ops == ["admit"]  # the refused conditional write, nothing more
    error = refused.value
    assert error.status_code == 429
    assert error.code == "too_many_streams"
    assert int(error.headers["Retry-After"]) >= 1
    assert "limit is 2" in error.message
    assert not await _is_held(store, "u", "c")
    assert _stops(slots).calls == []
    # another user is not affected, and a release frees a place at once
    await slots.acquire("v", "x")
    await slots.release("u", "a")
    await slots.acquire("u", "c")


async def test_replace_hands_the_oldest_place_over_and_stops_it_anywhere() -> None:
    store, _ = recording_store()
    slots = _slots(store, limit=2, policy="replace")
    await slots.acquire("u", "oldest")
    await asyncio.sleep(0.005)  # distinct creation times
    await slots.acquire("u", "younger")
    await slots.acquire("u", "newest")
    assert _stops(slots).calls == [("oldest", StopReason.REPLACED)]
    assert not await _is_held(store, "u", "oldest")
    assert await _is_held(store, "u", "younger")
    assert await _is_held(store, "u", "newest")


async def test_replace_picks_the_oldest_across_nodes() -> None:
    store, _ = recording_store()
    other = _slots(store, limit=2, policy="replace", node="n2")
    await other.start()  # n2 is alive
    here = _slots(store, limit=2, policy="replace", node="n1")
    await here.start()
    try:
        await other.acquire("u", "on-n2")
        await asyncio.sleep(0.005)
        await here.acquire("u", "on-n1")
        await here.acquire("u", "new")
        assert _stops(here).calls == [("on-n2", StopReason.REPLACED)]
    finally:
        await here.stop()
        await other.stop()


@pytest.mark.parametrize("policy", ["reject", "replace"])
async def test_holders_of_a_node_whose_heartbeat_lapsed_are_evicted(policy: str) -> None:
    store, _ = recording_store()
    await store.node_heartbeat("dead", now_ms() - 1)  # it stopped beating
    await store.node_heartbeat("alive", now_ms() + 60_000)
    for stream_id, node in (("d1", "dead"), ("d2", "dead"), ("l1", "alive")):
        assert (await store.admit("u", Holder(stream_id, node, now_ms()), 3)).admitted
    slots = _slots(store, limit=3, policy=policy)
    await slots.acquire("u", "new")  # succeeds: the dead node's holders made room
    assert _stops(slots).calls == []  # nobody alive was stopped for it
    assert not await _is_held(store, "u", "d1")
    assert not await _is_held(store, "u", "d2")
    assert await _is_held(store, "u", "l1")
    assert await _is_held(store, "u", "new")


async def test_a_node_that_never_beat_counts_as_dead_but_a_live_one_holds_its_slots() -> None:
    store, _ = recording_store()
    await store.node_heartbeat("alive", now_ms() + 60_000)
    await store.admit("u", Holder("ghost", "never-seen", now_ms()), 2)
    await store.admit("u", Holder("l1", "alive", now_ms()), 2)
    slots = _slots(store, limit=2)
    await slots.acquire("u", "new")  # the ghost's place
    with pytest.raises(RateLimited):
        await slots.acquire("u", "one-more")  # both remaining holders are alive


async def test_this_nodes_own_holders_count_as_alive_without_a_heartbeat() -> None:
    store, _ = recording_store()
    slots = _slots(store, limit=1)  # never started: no heartbeat of its own in the store
    await slots.acquire("u", "a")
    with pytest.raises(RateLimited):
        await slots.acquire("u", "b")


async def test_node_heartbeats_keep_its_slots_and_stop_when_it_stops() -> None:
    store, _ = recording_store()
    slots = Slots(
        store, node="n1", limit=1, policy="reject", node_ttl_s=0.6, stop_anywhere=_Stops()
    )
    await slots.start()
    await slots.acquire("u", "a")
    other = _slots(store, limit=1, node="n2")
    await asyncio.sleep(0.9)  # longer than the ttl: only the beats keep n1 alive
    with pytest.raises(RateLimited):
        await other.acquire("u", "b")
    await slots.stop()  # as if the node died: its beats stop
    await asyncio.sleep(0.7)
    await other.acquire("u", "b")  # n1's slot lapsed on its own


class _CountingProvider(LocalProvider):
    def __init__(self) -> None:
        super().__init__(["local-model"], 0.0, 0.0)
        self.calls = 0

    def stream(self, request, on_text=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().stream(request, on_text)


async def test_a_create_cancelled_during_its_claim_gives_the_slot_back() -> None:
    store = MemoryStore(latency_s=0.05)  # the claim takes a while
    provider = _CountingProvider()
    engine = StreamEngine(
        Settings(max_streams_per_user=1),
        StreamSettings(node_id="n1"),
        store,
        provider,
    )
    await engine.start()
    try:
        create = asyncio.ensure_future(engine.create("u", chat("hi"), time.perf_counter()))
        await asyncio.sleep(0.01)  # the admit write is on its way
        create.cancel()
        with pytest.raises(asyncio.CancelledError):
            await create
        assert provider.calls == 0 and engine.live == {}  # nothing went upstream

        async def slot_free() -> bool:
            return (await store.admit("u", Holder("probe", "n1", now_ms()), 1)).admitted

        deadline = time.monotonic() + 2
        while not await slot_free():
            assert time.monotonic() < deadline, "the cancelled create kept its slot"
            await asyncio.sleep(0.02)
        await store.release("u", "probe")
        stream = await engine.create("u", chat("hi"), time.perf_counter())  # one more fits
        assert stream.task is not None
        await stream.task
        await until(lambda: provider.calls == 1)
    finally:
        await engine.stop()


class _ReleaseOutage(MemoryStore):
    """A store whose ``release`` fails while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def release(self, user: str, stream_id: str) -> bool:
        if self.down:
            raise ConnectionError("the store is unreachable")
        return await super().release(user, stream_id)


async def test_a_slot_that_could_not_be_released_is_given_back_once_the_store_recovers() -> None:
    store = _ReleaseOutage()
    slots = Slots(
        store, node="n1", limit=1, policy="reject", node_ttl_s=0.3, stop_anywhere=_Stops()
    )
    await slots.start()
    try:
        await slots.acquire("u", "a")
        store.down = True
        await asyncio.wait_for(slots.release("u", "a"), 5)  # the stream ended in an outage
        with pytest.raises(RateLimited):
            await slots.acquire("u", "b")  # still held, by a live node
        store.down = False
        deadline = time.monotonic() + 2
        while True:  # given back with a heartbeat, while the node lives
            try:
                await slots.acquire("u", "b")
                break
            except RateLimited:
                assert time.monotonic() < deadline, "the slot was never given back"
                await asyncio.sleep(0.05)
    finally:
        await slots.stop()


@pytest.mark.parametrize("policy", ["reject", "replace"])
async def test_an_unread_stream_yields_its_slot_first_under_either_policy(policy: str) -> None:
    store = MemoryStore()
    unread: set[str] = set()

    async def find_unread(holders: list[Holder]) -> set[str]:
        return {h.stream_id for h in holders} & unread

    slots = Slots(
        store,
        node="n1",
        limit=2,
        policy=policy,
        node_ttl_s=30,
        stop_anywhere=_Stops(),
        find_unread=find_unread,
    )
    await slots.start()
    try:
        for stream_id in ("old", "young"):
            await slots.acquire("u", stream_id)
            await asyncio.sleep(0.002)  # distinct creation times
        unread.add("young")  # its client went away; the older one is read
        await slots.acquire("u", "new")
        assert _stops(slots).calls == [("young", StopReason.UNREAD)]
        assert not await _is_held(store, "u", "young")  # (checking "old" would renew it)
        # every stream read: the policy decides
        if policy == "reject":
            with pytest.raises(RateLimited):
                await slots.acquire("u", "newer")
        else:
            await slots.acquire("u", "newer")
            assert _stops(slots).calls[-1] == ("old", StopReason.REPLACED)
    finally:
        await slots.stop()
