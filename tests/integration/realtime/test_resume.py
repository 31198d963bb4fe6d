"""Resume (SPEC section 7): a socket that drops comes back within REALTIME_RESUME_GRACE_S
and gets every server event it missed, in order, then live ones; the reply goes on."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI
from openai.types.websocket_reconnection import ReconnectingEvent, ReconnectingOverrides

from core.auth.dev import DevTokens
from tests.integration.realtime.conftest import GRACE_S, MODEL, ws_base
from tests.integration.realtime.raw import drop, open_voice, recv, send
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow


async def start_spoken_reply(ws: websockets.ClientConnection, tokens: int) -> str:
    created = await recv(ws)
    assert created["type"] == "session.created"
    await send(
        ws,
        type="session.update",
        session={
            "type": "realtime",
            "max_output_tokens": tokens,
            "audio": {"input": {"turn_detection": None}},
        },
    )
    await send(
        ws,
        type="conversation.item.create",
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Tell me about streaming"}],
        },
    )
    await send(ws, type="response.create")
    return str(created["session"]["id"])


async def read_until(
    ws: websockets.ClientConnection, kind: str, into: list[dict[str, Any]], within: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        event = await recv(ws, max(0.1, deadline - time.monotonic()))
        into.append(event)
        if event["type"] == kind:
            return event


async def expect_session_not_found(ws: websockets.ClientConnection) -> None:
    event = await recv(ws)
    assert event["type"] == "error"
    assert event["error"]["code"] == "session_not_found"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_dropped_socket_resumes_every_missed_event_and_the_reply_goes_on(
    voice_node: ProcessServer, tokens: DevTokens
) -> None:
    token = tokens.mint("alice")
    ws = await open_voice(voice_node, token)
    session_id = await start_spoken_reply(ws, tokens=14)
    before: list[dict[str, Any]] = []
    for _ in range(6):
        await read_until(ws, "response.output_audio.delta", before)
    drop(ws)
    await asyncio.sleep(1.0)  # the reply goes on while nobody listens

    ws2 = await open_voice(
        voice_node, token, session_id=session_id, after_event_id=before[-1]["event_id"]
    )
    resumed_at = time.monotonic()
    after: list[dict[str, Any]] = []
    first = await recv(ws2)
    burst_at = time.monotonic()
    after.append(first)
    done = await read_until(ws2, "response.done", after)
    # the reply ran whole, to its max_output_tokens (OpenAI reports that incomplete)
    assert done["response"]["status_details"] == {
        "type": "incomplete",
        "reason": "max_output_tokens",
    }

    ids = [e["event_id"] for e in before + after]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    # nothing lost: the transcript deltas and the audio deltas add up to the whole reply
    events = before + after
    text = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    final = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert text == final["transcript"] and len(text.split()) == 14
    audio = sum(
        len(base64.b64decode(e["delta"]))
        for e in events
        if e["type"] == "response.output_audio.delta"
    )
    item = next(e for e in events if e["type"] == "response.output_item.added")["item"]["id"]
    await send(ws2, type="conversation.item.retrieve", item_id=item)
    retrieved = await read_until(ws2, "conversation.item.retrieved", after)
    assert retrieved["item"]["content"][0]["transcript"] == final["transcript"]
    assert audio >= 48 * 2000
    # what was produced during the drop came at once, not at real-time pace
    missed = [e for e in after[:40] if e["type"] == "response.output_audio.delta"]
    assert len(missed) >= 10 and burst_at - resumed_at < 1.0

    # the conversation goes on over the new socket
    await send(ws2, type="response.create")
    created = await read_until(ws2, "response.created", after)
    await send(ws2, type="response.cancel")
    cancelled = await read_until(ws2, "response.done", after)
    assert cancelled["response"]["id"] == created["response"]["id"]
    await ws2.close()


async def test_after_the_grace_another_user_or_a_normal_close_it_is_session_not_found(
    voice_node: ProcessServer, tokens: DevTokens
) -> None:
    token = tokens.mint("alice")
    ws = await open_voice(voice_node, token)
    session_id = await start_spoken_reply(ws, tokens=40)
    seen: list[dict[str, Any]] = []
    last = await read_until(ws, "response.output_audio.delta", seen)
    drop(ws)

    # another user cannot take it over (and learns nothing about it)
    other = await open_voice(voice_node, tokens.mint("mallory"), session_id=session_id)
    await expect_session_not_found(other)

    await asyncio.sleep(GRACE_S + 1.0)
    late = await open_voice(
        voice_node, token, session_id=session_id, after_event_id=last["event_id"]
    )
    await expect_session_not_found(late)

    # a normal close (1000) ends the session at once: no grace
    ws = await open_voice(voice_node, token)
    created = await recv(ws)
    await ws.close()
    await asyncio.sleep(0.2)
    again = await open_voice(voice_node, token, session_id=created["session"]["id"])
    await expect_session_not_found(again)


async def test_a_resume_on_another_node_is_session_not_found(
    voice_node: ProcessServer, relay_node: ProcessServer, tokens: DevTokens
) -> None:
    token = tokens.mint("alice")
    ws = await open_voice(voice_node, token)
    created = await recv(ws)
    drop(ws)
    elsewhere = await open_voice(relay_node, token, session_id=created["session"]["id"])
    await expect_session_not_found(elsewhere)


async def test_voice_sessions_per_user_are_limited(
    voice_node: ProcessServer, tokens: DevTokens
) -> None:
    token = tokens.mint("carol")
    sockets = [await open_voice(voice_node, token) for _ in range(3)]  # the limit is 3
    for ws in sockets:
        assert (await recv(ws))["type"] == "session.created"
    extra = await open_voice(voice_node, token)
    refused = await recv(extra)
    assert refused["error"]["code"] == "session_limit_reached"
    assert "REALTIME_MAX_SESSIONS_PER_USER" in refused["error"]["message"]
    await sockets[0].close()
    await asyncio.sleep(0.2)
    replacement = await open_voice(voice_node, token)
    assert (await recv(replacement))["type"] == "session.created"
    for ws in [*sockets[1:], replacement]:
        await ws.close()


async def test_the_official_sdk_resumes_through_its_reconnect_hook(
    voice_node: ProcessServer, tokens: DevTokens
) -> None:
    """openai-python's ``on_reconnecting`` may change the query of the next attempt: with
    ``session_id`` and ``after_event_id`` there, an SDK client resumes on its own."""
    state: dict[str, str] = {}
    reconnects: list[int] = []

    def on_reconnecting(event: ReconnectingEvent) -> ReconnectingOverrides:
        reconnects.append(event.close_code)
        return {"extra_query": {"session_id": state["session"], "after_event_id": state["last"]}}

    client = AsyncOpenAI(
        api_key=tokens.mint("alice"),
        base_url=voice_node.url + "/api/v1",
        websocket_base_url=ws_base(voice_node),
    )
    events: list[Any] = []
    async with client.realtime.connect(
        model=MODEL, on_reconnecting=on_reconnecting, initial_delay=0.1, max_retries=3
    ) as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "max_output_tokens": 10,
                "audio": {"input": {"turn_detection": None}},
            }
        )
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello"}],
            }
        )
        await conn.response.create()
        dropped = False
        async for event in conn:
            events.append(event)
            state["last"] = event.event_id
            if event.type == "session.created":
                state["session"] = event.session.id
            deltas = [e for e in events if e.type == "response.output_audio.delta"]
            if len(deltas) == 4 and not dropped:
                dropped = True
                conn._connection.transport.abort()  # the network goes away
            if event.type == "response.done":
                break
    assert reconnects == [1006]
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))
    assert sum(1 for e in events if e.type == "session.created") == 1  # the same session
    text = "".join(e.delta for e in events if e.type == "response.output_audio_transcript.delta")
    final = next(e for e in events if e.type == "response.output_audio_transcript.done")
    assert text == final.transcript and len(text.split()) == 10
    assert events[-1].response.status_details.reason == "max_output_tokens"  # ran whole
