"""The push transport's slots: a waiter handed a slot just as it times out or is cancelled
passes it on; none is lost, and the cancel stays a cancel."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from core.providers.push_transport import _Pool

REQUEST = httpx2.Request("GET", "http://upstream/")


async def test_a_waiter_cancelled_as_a_slot_is_handed_to_it_passes_it_on() -> None:
    pool = _Pool(1, 30)
    await pool.take_slot(None, REQUEST)
    waiting = asyncio.create_task(pool.take_slot(None, REQUEST))
    await asyncio.sleep(0)
    waiting.cancel()
    pool.give_slot()  # another stream ends in the same turn of the loop
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(pool.take_slot(0.1, REQUEST), 1)  # the slot is there


async def test_a_waiter_timing_out_as_a_slot_is_handed_to_it_passes_it_on() -> None:
    pool = _Pool(1, 30)
    await pool.take_slot(None, REQUEST)
    waiting = asyncio.create_task(pool.take_slot(0, REQUEST))
    asyncio.get_running_loop().call_soon(pool.give_slot)
    with pytest.raises(httpx2.PoolTimeout):
        await waiting
    await asyncio.wait_for(pool.take_slot(0.1, REQUEST), 1)
