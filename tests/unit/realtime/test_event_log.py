from __future__ import annotations

import asyncio
import time

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


async def test_old_events_go_and_the_last_one_dropped_still_resumes() -> None:
    log = EventLog(max_bytes=1 << 20, max_age_s=0.05)
    log.append("a", "e0", time.monotonic())
    await asyncio.sleep(0.1)  # e0 was the last event a client got, then it went away
    log.append("b", "e1", time.monotonic())
    assert log.seq_after("e0") == 1  # dropped for age, but nothing after it is missing
    assert [f for f, _ in log.read(1)] == ["b"]
    await asyncio.sleep(0.1)
    log.append("c", "e2", time.monotonic())
    assert log.seq_after("e0") is None  # now "b" is gone too: a resume from e0 would skip it
