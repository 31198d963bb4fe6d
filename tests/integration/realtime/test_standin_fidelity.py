"""The stand-in as OpenAI answers (SPEC section 7: "The stand-in hears you", "Fidelity to
the GA protocol", "Function calling"), through the official SDK's realtime client."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from typing import Any

import pytest

from tests.integration.realtime.client import Events, stream_audio
from tests.integration.realtime.conftest import Connect
from tests.support.speech import silence, speech

pytestmark = pytest.mark.slow

TRANSCRIBED = {"audio": {"input": {"transcription": {"model": "whisper-1"}}}}
MANUAL = {"audio": {"input": {"turn_detection": None}}}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def said(done: Any) -> str:
    """The text of a response.done's message (its transcript, or its text)."""
    part = done.response.output[0].content[0]
    return str(part.transcript if part.type == "output_audio" else part.text)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


async def user_text(conn: Any, text: str) -> None:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )


async def test_two_utterances_get_replies_that_begin_with_what_was_heard(
    connect: Connect,
) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(session={"type": "realtime", **TRANSCRIBED})
        await events.until("session.updated")
        heard: list[str] = []
        replies: list[str] = []
        for sentence in ("What time does the store open", "Tell me about the weather"):
            sender = asyncio.create_task(stream_audio(conn, speech(sentence) + silence(900)))
            done = await events.until("response.done", within=40)
            await sender
            transcript = [
                e.transcript
                for e in events.of("conversation.item.input_audio_transcription.completed")
            ][-1]
            assert done.response.status == "completed"
            heard.append(transcript)
            replies.append(said(done))
    for transcript, reply in zip(heard, replies, strict=True):
        assert transcript.strip()
        assert reply.startswith("I heard: ")
        assert words(reply)[2 : 2 + len(words(transcript))] == words(transcript)
    assert replies[0] != replies[1]


async def test_a_manual_turn_is_answered_after_its_transcription(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(
            session={"type": "realtime", "output_modalities": ["text"], **MANUAL}
        )
        await events.until("session.updated")
        await stream_audio(conn, speech("Hello there my friend") + silence(300), chunk_ms=500)
        await conn.input_audio_buffer.commit()
        committed = await events.until("input_audio_buffer.committed")
        await conn.response.create()
        done = await events.until("response.done", within=30)
        await conn.send({"type": "conversation.item.retrieve", "item_id": committed.item_id})
        item = (await events.until("conversation.item.retrieved")).item
    transcript = item.content[0].transcript
    assert transcript and said(done).startswith(f"I heard: {transcript}")


async def test_ten_minutes_of_silence_after_a_reply_never_make_the_session_deaf(
    connect: Connect,
) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(session={"type": "realtime", "max_output_tokens": 4})
        await events.until("session.updated")
        sender = asyncio.create_task(stream_audio(conn, speech("Good morning") + silence(900)))
        await events.until("response.done", within=30)
        await sender
        # ten minutes of the microphone's silence, much faster than real time
        chunk = base64.b64encode(silence(30_000)).decode()  # 30 s of audio per append
        for n in range(20):
            await conn.input_audio_buffer.append(audio=chunk)
            if n % 10 == 9:
                await asyncio.sleep(0.6)  # within the node's 20 events a second
        await stream_audio(conn, speech("Are you still there") + silence(900))
        started = await events.until(
            lambda e: e.type == "input_audio_buffer.speech_started" and e.audio_start_ms > 600_000,
            within=60,
        )
    assert started.audio_start_ms > 600_000
    assert not [e for e in events.of("error")], [e.error for e in events.of("error")]


async def test_response_create_refuses_invalid_parameters_and_runs_nothing(
    connect: Connect,
) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await user_text(conn, "Hello")
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"output_modalities": "text"}, "invalid_value", "response.output_modalities"),
            ({"output_modalities": ["video"]}, "invalid_value", "response.output_modalities[0]"),
            ({"instructions": 5}, "invalid_value", "response.instructions"),
            ({"max_output_tokens": 0}, "invalid_value", "response.max_output_tokens"),
            ({"temperature": 0.3}, "unknown_parameter", "response.temperature"),
            ({"conversation": "other"}, "invalid_value", "response.conversation"),
        ]
        for n, (response, code, param) in enumerate(cases):
            await conn.response.create(response=response, event_id=f"evt_bad_{n}")
            error = await events.until("error")
            assert (error.error.code, error.error.param, error.error.event_id) == (
                code,
                param,
                f"evt_bad_{n}",
            )
        await conn.session.update(session={"type": "realtime", "turn_detection": None})
        error = await events.until("error")
        assert (error.error.code, error.error.param) == (
            "unknown_parameter",
            "session.turn_detection",
        )
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
        updated = await events.until("session.updated")
    assert not events.of("response.created")
    # the refused update changed nothing: server VAD is still on
    assert updated.session.audio.input.turn_detection.type == "server_vad"


async def test_response_create_honours_its_parameters(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await user_text(conn, "Tell me a long story about trains")
        await conn.response.create(response={"output_modalities": ["text"]})
        main = await events.until("response.created")
        # an out-of-band response runs beside it, with its own input, and is not kept
        await conn.response.create(
            response={
                "conversation": "none",
                "output_modalities": ["text"],
                "metadata": {"purpose": "classify"},
                "input": [
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "/echo out of band words"}],
                    }
                ],
            }
        )
        side = await events.until(
            lambda e: e.type == "response.created" and e.response.id != main.response.id
        )
        side_done = await events.until(
            lambda e: e.type == "response.done" and e.response.id == side.response.id, within=30
        )
        main_done = await events.until(
            lambda e: e.type == "response.done" and e.response.id == main.response.id, within=30
        )
        limits = await events.until("rate_limits.updated")
        await conn.send(
            {"type": "conversation.item.retrieve", "item_id": side_done.response.output[0].id}
        )
        missing = await events.until("error")
        # max_output_tokens cuts the reply: incomplete
        await user_text(conn, "And another one")
        await conn.response.create(response={"max_output_tokens": 3, "output_modalities": ["text"]})
        cut = await events.until("response.done", within=30)
    assert not [e for e in events.of("error") if e is not missing]
    assert side_done.response.status == "completed"
    assert side_done.response.metadata == {"purpose": "classify"}
    assert side_done.response.conversation_id is None
    assert said(side_done) == "out of band words"
    assert missing.error.param == "item_id"
    added = [e.item.id for e in events.of("conversation.item.added")]
    assert side_done.response.output[0].id not in added
    assert main_done.response.status == "completed"
    assert said(main_done).startswith("I heard: Tell me a long story about trains.")
    usage = main_done.response.usage
    assert usage.input_tokens > 0 and usage.output_tokens == len(said(main_done).split())
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert {limit.name for limit in limits.rate_limits} == {"requests", "tokens"}
    assert cut.response.status == "incomplete"
    assert cut.response.status_details.reason == "max_output_tokens"
    assert len(said(cut).split()) == 3


async def test_a_function_is_called_and_its_output_is_spoken(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(session={"type": "realtime", "tools": [WEATHER]})
        await events.until("session.updated")
        await user_text(conn, '/tool get_weather {"city": "Paris"}')
        await conn.response.create()
        call_done = await events.until("response.done", within=20)
        call = call_done.response.output[0]
        deltas = events.of("response.function_call_arguments.delta")
        args_done = events.of("response.function_call_arguments.done")[0]
        await conn.conversation.item.create(
            item={
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": '{"temperature_c": 21}',
            }
        )
        await events.until("conversation.item.done")
        await conn.response.create()
        spoken = await events.until("response.done", within=30)
        # a tool named in a turn's words is called too (response tools, schema-valid arguments)
        await user_text(conn, "Please get weather for me")
        await conn.response.create(response={"output_modalities": ["text"]})
        named = await events.until("response.done", within=20)
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert len(deltas) >= 2 and "".join(d.delta for d in deltas) == call.arguments
    assert (args_done.call_id, args_done.arguments) == (call.call_id, call.arguments)
    assert call_done.response.status == "completed"
    assert '{"temperature_c": 21}' in said(spoken)
    assert events.audio(spoken.response.id), "the output is spoken"
    assert named.response.output[0].type == "function_call"
    assert json.loads(named.response.output[0].arguments) == {"city": ""}


async def test_previous_item_id_is_honoured(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await user_text(conn, "one")
        first = await events.until("conversation.item.added")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "x"}],
            },
            previous_item_id="item_nope",
            event_id="evt_prev",
        )
        error = await events.until("error")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "0"}],
            },
            previous_item_id="root",
        )
        root = await events.until("conversation.item.added")
    assert (error.error.code, error.error.param, error.error.event_id) == (
        "invalid_value",
        "previous_item_id",
        "evt_prev",
    )
    assert first.previous_item_id is None
    assert root.previous_item_id is None and root.item.id != first.item.id


async def test_an_unpaced_upload_still_gets_its_commit_and_reply(connect: Connect) -> None:
    """The rate limit (20 events a second here) drops appends, never the turn's end."""
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(
            session={"type": "realtime", "output_modalities": ["text"], **MANUAL}
        )
        await events.until("session.updated")
        pcm = speech("Hello there") + silence(300)
        step = 48 * 20
        for offset in range(0, len(pcm), step):  # 20 ms appends as fast as the socket goes
            await conn.input_audio_buffer.append(
                audio=base64.b64encode(pcm[offset : offset + step]).decode()
            )
        await conn.input_audio_buffer.commit(event_id="evt_commit")
        await conn.response.create(event_id="evt_create")
        done = await events.until("response.done", within=30)
    limited = [e for e in events.of("error") if e.error.code == "rate_limit_exceeded"]
    assert limited, "the upload was meant to outrun the rate limit"
    assert not [e for e in limited if e.error.event_id in ("evt_commit", "evt_create")]
    assert events.of("input_audio_buffer.committed")
    assert done.response.status == "completed"


async def test_openai_sized_events_are_accepted(connect: Connect) -> None:
    """An append of minutes of audio (5 MiB) and an image item of 1 MB: no 1009, no error."""
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.input_audio_buffer.append(audio=base64.b64encode(silence(110_000)).decode())
        image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" * 256 * 1024).decode()
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_image", "image_url": image}],
            }
        )
        added = await events.until("conversation.item.added", within=30)
        await conn.session.update(session={"type": "realtime", "instructions": "Still here."})
        await events.until("session.updated")
    assert added.item.content[0].type == "input_image"
    assert not events.of("error"), [e.error for e in events.of("error")]
