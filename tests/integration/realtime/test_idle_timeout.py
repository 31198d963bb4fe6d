"""``idle_timeout_ms``: silence after a reply has played out prompts the model to go on."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.realtime.client import Events, stream_audio
from tests.integration.realtime.conftest import Connect
from tests.support.speech import silence

pytestmark = pytest.mark.slow


async def test_silence_after_a_reply_triggers_the_idle_timeout(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(
            session={
                "type": "realtime",
                "max_output_tokens": 3,
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}
                },
            }
        )
        await events.until("session.updated")
        await conn.response.create()
        done = await events.until("response.done")
        played_out = len(events.audio(done.response.id)) // 48
        mic = asyncio.create_task(stream_audio(conn, silence(played_out + 6500)))
        triggered = await events.until("input_audio_buffer.timeout_triggered", within=20)
        assert 4900 <= triggered.audio_end_ms - triggered.audio_start_ms <= 5300
        committed = await events.until("input_audio_buffer.committed")
        assert committed.item_id == triggered.item_id
        await events.until("response.created")
        mic.cancel()
