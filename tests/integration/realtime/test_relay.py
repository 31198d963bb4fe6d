"""``LLM_PROVIDER=openai``: the relay against a scripted upstream realtime server started by
the test: events pass both ways unchanged, the server's key goes upstream and the client's
never does, an upstream drop is an ``error``, resumes work, and the upstream closes after
the grace."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI

from core.auth.dev import DevTokens
from devstack.realtime_upstream import RealtimeUpstream
from tests.integration.realtime.conftest import MODEL, RELAY_GRACE_S, SERVER_KEY, ws_base
from tests.integration.realtime.raw import drop, open_voice, recv, send
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

GRACE_S = RELAY_GRACE_S


async def read_until(
    ws: websockets.ClientConnection, kind: str, into: list[dict[str, Any]]
) -> dict[str, Any]:
    while True:
        event = await recv(ws)
        into.append(event)
        if event["type"] == kind:
            return event


async def test_events_pass_both_ways_with_the_servers_key_upstream(
    relay_node: ProcessServer, upstream: tuple[RealtimeUpstream, str], tokens: DevTokens
) -> None:
    user_token = tokens.mint("alice")
    client = AsyncOpenAI(
        api_key=user_token,
        base_url=relay_node.url + "/api/v1",
        websocket_base_url=ws_base(relay_node),
    )
    async with client.realtime.connect(model=MODEL) as conn:
        created = await conn.recv()
        assert created.type == "session.created"
        # the session's own id (what a resume names), not the upstream's
        assert created.session.id.startswith("sess_") and created.session.id != "sess_upstream_1"
        record = upstream[0].connections[-1]
        assert record.path == f"/v1/realtime?model={MODEL}"
        assert record.headers["authorization"] == f"Bearer {SERVER_KEY}"
        assert not [v for v in record.headers.values() if user_token in v]

        frame = json.dumps({"type": "test.echo", "event_id": "evt_echo", "payload": {"n": [1, 2]}})
        await conn._connection.send(frame)
        echoed = await conn.recv()
        assert echoed.type == "test.echoed"
        assert record.frames[-1] == frame  # unchanged, byte for byte

        await conn.input_audio_buffer.append(audio="AAAAAA==")
        await conn.response.create()
        deltas = []
        while (event := await conn.recv()).type != "response.done":
            if event.type == "response.output_audio.delta":
                deltas.append(event)
        assert len(deltas) == 25
        numbers = [int(d.event_id.rsplit("_", 1)[1]) for d in deltas]
        assert numbers == list(range(numbers[0], numbers[0] + 25))  # upstream ids, in order
        appended = [json.loads(f) for f in record.frames if "input_audio_buffer.append" in f]
        assert appended == [{"type": "input_audio_buffer.append", "audio": "AAAAAA=="}]

        # a limit is enforced here, and the refused event never reaches the upstream
        big = "A" * (15 * 1024 * 1024 // 3 * 4 + 400)  # REALTIME_MAX_APPEND_BYTES (OpenAI's)
        await conn._connection.send(
            json.dumps({"type": "input_audio_buffer.append", "event_id": "evt_big", "audio": big})
        )
        error = await conn.recv()
        assert (error.type, error.error.code, error.error.event_id) == (
            "error",
            "audio_too_large",
            "evt_big",
        )
        assert len([f for f in record.frames if "input_audio_buffer.append" in f]) == 1


@pytest.mark.parametrize("failure", ["test.drop", "test.close"])
async def test_an_upstream_failure_is_an_error_event_then_a_close(
    relay_node: ProcessServer, tokens: DevTokens, failure: str
) -> None:
    ws = await open_voice(relay_node, tokens.mint("alice"))
    assert (await recv(ws))["type"] == "session.created"
    await send(ws, type=failure)
    event = await recv(ws)
    assert event["type"] == "error"
    assert event["error"]["code"] == "upstream_disconnected"
    assert event["error"]["type"] == "server_error"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_an_upstream_that_refuses_the_handshake_is_an_error_event(
    relay_node: ProcessServer, tokens: DevTokens
) -> None:
    url = f"{ws_base(relay_node)}/realtime?model=refuse"
    async with websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {tokens.mint('alice')}"}
    ) as ws:
        event = await recv(ws)
        assert (event["type"], event["error"]["code"]) == ("error", "upstream_refused")
        assert "503" in event["error"]["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_a_relayed_session_resumes_and_its_upstream_closes_after_the_grace(
    relay_node: ProcessServer, upstream: tuple[RealtimeUpstream, str], tokens: DevTokens
) -> None:
    token = tokens.mint("alice")
    ws = await open_voice(relay_node, token)
    created = await recv(ws)
    record = upstream[0].connections[-1]
    await send(ws, type="response.create")
    before: list[dict[str, Any]] = []
    for _ in range(5):
        await read_until(ws, "response.output_audio.delta", before)
    drop(ws)
    await asyncio.sleep(0.3)

    ws2 = await open_voice(
        relay_node,
        token,
        session_id=created["session"]["id"],
        after_event_id=before[-1]["event_id"],
    )
    after: list[dict[str, Any]] = []
    await read_until(ws2, "response.done", after)
    deltas = [e for e in before + after if e["type"] == "response.output_audio.delta"]
    assert len(deltas) == 25
    numbers = [int(e["event_id"].rsplit("_", 1)[1]) for e in deltas]
    assert numbers == list(range(numbers[0], numbers[0] + 25))
    assert record.closed_at is None  # the upstream waited for the resume

    drop(ws2)
    dropped_at = time.monotonic()
    await asyncio.sleep(GRACE_S / 2)
    assert record.closed_at is None
    deadline = time.monotonic() + GRACE_S + 3
    while record.closed_at is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert record.closed_at is not None, "the upstream was not closed after the grace"
    assert GRACE_S - 0.2 <= record.closed_at - dropped_at <= GRACE_S + 2
