from __future__ import annotations

import asyncio

import pytest

from stream_service.realtime.event_log import EventLog, Gap


def test_positions_after_an_event_and_reads_from_them() -> None:
    log = EventLog(max_bytes=1 << 20)
    for n in range(5):
        log.append(f"frame{n}", f"e{n}", 0.0)
    seq = log.seq_after("e2")
    assert seq == 3
    assert [f for f, _ in log.read(seq)] == ["frame3", "frame4"]
    assert log.read(5) == []
    assert log.seq_after("unknown") is None


def test_the_oldest_events_go_past_the_byte_bound_and_a_reader_there_gets_a_gap() -> None:
    log = EventLog(max_bytes=100)
    for n in range(20):
        log.append("x" * 20, f"e{n}", 0.0)
    assert log.seq_after("e0") is None  # trimmed: cannot be resumed from
    assert log.seq_after("e19") == 20
    with pytest.raises(Gap):
        log.read(0)
    assert len(log.read(16)) == 4


async def test_a_waiting_reader_wakes_on_append_and_on_poke() -> None:
    log = EventLog(max_bytes=1 << 20)
    waiter = asyncio.create_task(log.wait_beyond(0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    log.append("a", "e0", 0.0)
    await asyncio.wait_for(waiter, 1)
    waiter = asyncio.create_task(log.wait_beyond(1))
    await asyncio.sleep(0.01)
    log.poke()
    await asyncio.wait_for(waiter, 1)
