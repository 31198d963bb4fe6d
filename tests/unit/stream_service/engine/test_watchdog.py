"""Watchdog alone: cancel flags, the first-token limit apart from the idle limit, the grace
window, remote reader heartbeats, lease renewals."""

from __future__ import annotations

import asyncio
import time

from stream_service.engine.live import LiveStream
from stream_service.engine.types import StopReason
from stream_service.engine.watchdog import Limits, Watchdog
from stream_service.store import StreamMeta
from stream_service.store.base import now_ms
from stream_service.store.memory import MemoryStore
from tests.unit.stream_service.engine.support import live_stream, until

IDLE_S = 0.2
FIRST_TOKEN_S = 1.0


class _Rig:
    """A watchdog over one stream whose record is in a memory store; stops are recorded."""

    def __init__(self, grace_s: float = 30.0, lease_ttl_s: float = 6.0) -> None:
        self.store = MemoryStore()
        self.stream = live_stream()
        self.stream.timings.upstream_sent = time.perf_counter()
        self.stops: list[StopReason] = []
        self.limits = Limits(
            keepalive_s=0.2,
            resume_grace_s=grace_s,
            poll_interval_s=0.05,
            lease_ttl_s=lease_ttl_s,
            first_token_s=FIRST_TOKEN_S,
            idle_s=IDLE_S,
        )
        self.watchdog = Watchdog(
            self.store,
            self.limits,
            node="n1",
            streams=lambda: [self.stream],
            stored=lambda _s: True,
            stop=self._stop,
        )
        self.stream.presence.attach()  # read here, unless a test says otherwise

    def _stop(self, stream: LiveStream, reason: StopReason) -> None:
        assert stream is self.stream
        self.stops.append(reason)

    async def record(self) -> None:
        meta = StreamMeta(
            id=self.stream.id, owner="u", node="n1", model="m", lease_until_ms=now_ms() + 6000
        )
        await self.store.create(meta)


async def _rig(**kwargs: float) -> _Rig:
    rig = _Rig(**kwargs)
    await rig.record()
    return rig


async def test_a_cancel_flag_from_any_node_stops_it_for_the_client() -> None:
    rig = await _rig()
    await rig.watchdog.check()
    assert rig.stops == []
    await rig.store.request_cancel(rig.stream.id)
    await rig.watchdog.check()
    assert rig.stops == [StopReason.CLIENT]


async def test_waiting_for_the_first_token_longer_than_the_idle_limit_is_not_stopped() -> None:
    rig = await _rig()
    t = rig.stream.timings
    t.upstream_sent = time.perf_counter() - (IDLE_S + FIRST_TOKEN_S) / 2  # thinking, no token
    await rig.watchdog.check()
    assert rig.stops == []
    t.upstream_sent = time.perf_counter() - FIRST_TOKEN_S - 0.1
    await rig.watchdog.check()
    assert rig.stops == [StopReason.FIRST_TOKEN_TIMEOUT]


async def test_silence_between_tokens_has_the_idle_limit() -> None:
    rig = await _rig()
    t = rig.stream.timings
    now = time.perf_counter()
    t.upstream_sent = now - 5  # long ago: it does not matter once a token came
    t.first_token = t.last_token = now - IDLE_S / 2
    await rig.watchdog.check()
    assert rig.stops == []
    t.last_token = time.perf_counter() - IDLE_S - 0.05
    await rig.watchdog.check()
    assert rig.stops == [StopReason.UPSTREAM_TIMEOUT]


async def test_overdue_in_real_time() -> None:
    rig = await _rig()
    watchdog, t = rig.watchdog, rig.stream.timings
    t.upstream_sent = time.perf_counter()
    await asyncio.sleep(IDLE_S + 0.1)
    assert watchdog.overdue(rig.stream, time.perf_counter()) is None  # still thinking
    t.first_token = t.last_token = time.perf_counter()
    await asyncio.sleep(IDLE_S + 0.1)
    assert watchdog.overdue(rig.stream, time.perf_counter()) is StopReason.UPSTREAM_TIMEOUT


async def test_nobody_reading_for_the_grace_window_stops_it_and_a_reader_does_not() -> None:
    rig = await _rig(grace_s=0.2)
    await asyncio.sleep(0.3)
    await rig.watchdog.check()
    assert rig.stops == []  # read on this node
    rig.stream.presence.detach()  # the reader left: the grace starts now
    await rig.watchdog.check()
    assert rig.stops == []
    await asyncio.sleep(0.25)
    await rig.watchdog.check()
    assert rig.stops == [StopReason.NO_READER]


async def test_a_reader_heartbeat_from_another_node_restarts_the_grace() -> None:
    rig = await _rig(grace_s=0.6)
    rig.stream.timings.upstream_sent = None  # no upstream timer in play: only the grace
    rig.stream.presence.detach()  # nobody reads here
    await asyncio.sleep(0.3)
    await rig.store.touch_reader(rig.stream.id, now_ms() + 200)  # read elsewhere
    await rig.watchdog.check()
    assert rig.stops == []
    await asyncio.sleep(0.5)  # past the first grace window; the remote reader beats on
    await rig.store.touch_reader(rig.stream.id, now_ms() + 100)
    await rig.watchdog.check()
    assert rig.stops == []
    await asyncio.sleep(0.2)  # its heartbeat lapsed: the grace counts from its last one
    await rig.watchdog.check()
    assert rig.stops == []
    await asyncio.sleep(0.5)
    await rig.watchdog.check()
    assert rig.stops == [StopReason.NO_READER]


async def test_leases_are_renewed_with_the_produced_seq_and_a_lost_lease_stops_it() -> None:
    rig = await _rig(lease_ttl_s=0.3)
    rig.stream.append_delta(" a")
    rig.stream.append_delta(" b")
    before = now_ms()
    await rig.watchdog.renew_leases()
    meta = await rig.store.get_meta(rig.stream.id)
    assert meta is not None
    assert meta.lease_until_ms >= before + 300 and meta.last_seq == 2
    # another node declares it lost: the next renewal tells the watchdog
    assert await rig.store.mark_lost(rig.stream.id, now_ms() + 60_000)
    await asyncio.sleep(0.11)  # a third of the lease: time to renew
    await rig.watchdog.renew_leases()
    assert rig.stops == [StopReason.LEASE_LOST]


async def test_a_finished_stream_keeps_its_lease_until_its_status_is_written() -> None:
    rig = await _rig(lease_ttl_s=0.3)
    rig.stream.finished = True  # its final flush is still under way
    before = now_ms()
    await rig.watchdog.renew_leases()
    meta = await rig.store.get_meta(rig.stream.id)
    assert meta is not None
    assert meta.lease_until_ms >= before + 300


async def test_streams_without_a_record_yet_or_finished_are_left_alone() -> None:
    rig = _Rig(grace_s=0.0)
    rig.stream.presence.detach()
    rig.watchdog._stored = lambda _s: False  # its record is still on its way
    await rig.watchdog.check()
    assert rig.stops == []
    await rig.record()
    rig.watchdog._stored = lambda _s: True
    rig.stream.finished = True
    await rig.watchdog.check()
    assert rig.stops == []


async def test_the_loops_run_on_their_own() -> None:
    rig = await _rig()
    await rig.watchdog.start()
    try:
        # keepalive ticks wake idle readers (twice per KEEPALIVE_S) with no event
        await asyncio.wait_for(rig.stream.wait(), 0.2)
        await rig.store.request_cancel(rig.stream.id)
        await until(lambda: rig.stops[:1] == [StopReason.CLIENT], 2)  # polled
    finally:
        await rig.watchdog.stop()
