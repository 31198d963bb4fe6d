"""The relay passes what OpenAI accepts untouched (SPEC section 7, "Fidelity to the GA
protocol", "Function calling"): events of OpenAI's sizes, function-call events both ways,
and a client's mistake refused upstream closes the client's socket with 1008, not 1011."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

from core.auth.dev import DevTokens
from devstack.realtime_upstream import Connection, RealtimeUpstream
from tests.integration.realtime.conftest import MODEL, ws_base
from tests.integration.realtime.raw import open_voice, recv, send
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow


def client(node: ProcessServer, tokens: DevTokens, user: str) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=tokens.mint(user), base_url=node.url + "/api/v1", websocket_base_url=ws_base(node)
    )


async def received(record: Connection, frame: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while frame not in record.frames:
        assert time.monotonic() < deadline, "the frame never reached the upstream intact"
        await asyncio.sleep(0.05)


async def test_a_3_mb_append_and_a_300_kb_image_item_arrive_intact(
    relay_node: ProcessServer, upstream: tuple[RealtimeUpstream, str], tokens: DevTokens
) -> None:
    audio = base64.b64encode(os.urandom(3 * 1024 * 1024)).decode()
    image = "data:image/png;base64," + base64.b64encode(os.urandom(300 * 1024)).decode()
    async with client(relay_node, tokens, "big").realtime.connect(model=MODEL) as conn:
        await conn.recv()  # session.created
        record = upstream[0].connections[-1]
        await conn.input_audio_buffer.append(audio=audio, event_id="evt_big_audio")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": image}],
            },
            event_id="evt_big_image",
        )
        echo = json.dumps({"type": "test.echo", "event_id": "evt_after"})
        await conn._connection.send(echo)
        echoed = await conn.recv()
    assert echoed.type == "test.echoed"  # the socket lived on: no 1009
    sent = [json.loads(f) for f in record.frames]
    appends = [e for e in sent if e.get("event_id") == "evt_big_audio"]
    images = [e for e in sent if e.get("event_id") == "evt_big_image"]
    assert appends and appends[0]["audio"] == audio
    assert images and images[0]["item"]["content"][0]["image_url"] == image


async def test_function_call_events_pass_both_ways_unchanged(
    relay_node: ProcessServer, upstream: tuple[RealtimeUpstream, str], tokens: DevTokens
) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    async with client(relay_node, tokens, "calls").realtime.connect(model=MODEL) as conn:
        await conn.recv()
        record = upstream[0].connections[-1]
        await conn.response.create(response={"tools": [tool]})
        seen: list[Any] = []
        while not seen or seen[-1].type != "response.done":
            seen.append(await asyncio.wait_for(conn.recv(), 10))
        output = {
            "type": "conversation.item.create",
            "event_id": "evt_output",
            "item": {"type": "function_call_output", "call_id": "call_up_1", "output": '{"t": 21}'},
        }
        frame = json.dumps(output)
        await conn._connection.send(frame)
        await received(record, frame)
    kinds = [e.type for e in seen]
    assert kinds.count("response.function_call_arguments.delta") == 2
    done = next(e for e in seen if e.type == "response.function_call_arguments.done")
    assert (done.call_id, done.name, done.arguments) == (
        "call_up_1",
        "get_weather",
        '{"city": "Paris"}',
    )
    upstream_sent = [json.loads(f) for f in record.sent]
    for event in seen:
        assert event.to_dict() in upstream_sent or event.type == "session.created"


async def test_an_upstream_refusal_closes_the_client_with_1008(
    relay_node: ProcessServer, tokens: DevTokens
) -> None:
    ws = await open_voice(relay_node, tokens.mint("refused"))
    assert (await recv(ws))["type"] == "session.created"
    await send(ws, type="test.refuse")
    error = await recv(ws)
    with pytest.raises(websockets.ConnectionClosed):
        await recv(ws)
    assert error["type"] == "error"
    assert ws.close_code == 1008
