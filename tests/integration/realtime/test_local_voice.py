"""The local stand-in holds a voice conversation through the official SDK's realtime
client: speech in (real time), VAD turns, transcription, spoken replies, barge-in,
truncation, manual turns. Speech is made by espeak-ng at test time."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.realtime.client import Events, stream_audio
from tests.integration.realtime.conftest import Connect
from tests.support.speech import silence, speech, speech_ms

pytestmark = pytest.mark.slow

SHORT_REPLY = {"type": "realtime", "max_output_tokens": 6}


async def test_a_spoken_turn_gets_a_spoken_reply_with_its_transcripts(connect: Connect) -> None:
    utterance = speech("What time does the store open")
    async with connect() as conn:
        events = Events(conn)
        created = await events.until("session.created")
        assert created.session.id.startswith("sess_")
        await conn.session.update(
            session={**SHORT_REPLY, "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
        )
        await events.until("session.updated")
        sent_at = time.monotonic()
        # read while the microphone still sends: arrival times are the server's pacing
        sender = asyncio.create_task(stream_audio(conn, silence(300) + utterance + silence(900)))

        started = await events.until("input_audio_buffer.speech_started")
        stopped = await events.until("input_audio_buffer.speech_stopped")
        assert started.item_id == stopped.item_id
        spoken_ms = len(utterance) // 48
        heard_ms = stopped.audio_end_ms - started.audio_start_ms
        # the padding (300 ms) and the silence that ends the turn (500 ms) are included
        assert spoken_ms - 200 <= heard_ms <= spoken_ms + 300 + 500 + 300
        assert started.audio_start_ms <= 300  # speech begins 300 ms in; padding is before it
        committed = await events.until("input_audio_buffer.committed")
        assert committed.item_id == stopped.item_id

        done = await events.until("response.done", within=30)
        # cut by max_output_tokens (6): incomplete, as OpenAI reports it
        assert done.response.status == "incomplete"
        assert done.response.status_details.reason == "max_output_tokens"
        if not events.of("conversation.item.input_audio_transcription.completed"):
            await events.until("conversation.item.input_audio_transcription.completed")
        finished_at = time.monotonic()
        await sender

    transcript = events.of("conversation.item.input_audio_transcription.completed")[0]
    assert transcript.item_id == committed.item_id
    words = set(transcript.transcript.lower().split())
    assert words & {"what", "time", "store", "open"}, transcript.transcript

    reply = events.audio(done.response.id)
    assert len(reply) > 48 * 500
    assert speech_ms(reply) > 300, "the reply audio holds no speech"
    text = "".join(e.delta for e in events.of("response.output_audio_transcript.delta"))
    final = events.of("response.output_audio_transcript.done")[0].transcript
    assert text.split() == final.split() and len(final.split()) == 6
    assert done.response.output[0].content[0].transcript.split() == final.split()

    # paced no faster than real time (the allowed lead is 200 ms)
    deltas = [
        t
        for e, t in zip(events.seen, events.times, strict=True)
        if e.type == "response.output_audio.delta"
    ]
    reply_s = len(reply) / 48_000
    assert deltas[-1] - deltas[0] >= reply_s - 0.05 - 0.2 - 0.1
    assert finished_at - sent_at < 30


async def test_speech_during_a_reply_cancels_it_and_no_audio_follows(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await stream_audio(conn, speech("Tell me a long story") + silence(700))
        first = await events.until("response.output_audio.delta", within=15)
        # the user talks over the reply while it plays (the socket keeps sending silence)
        await stream_audio(conn, silence(600) + speech("Stop, wait a moment") + silence(800))
        done = await events.until(
            lambda e: e.type == "response.done" and e.response.id == first.response_id
        )
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "turn_detected"
        barge = [e for e in events.seen if e.type == "input_audio_buffer.speech_started"][-1]
        assert events.seen.index(barge) < events.seen.index(done)
        # the next turn is answered
        second = await events.until("response.created", within=15)
        await asyncio.sleep(0.3)
        await conn.response.cancel()
        await events.until(
            lambda e: e.type == "response.done" and e.response.id == second.response.id
        )

    after = events.seen[events.seen.index(done) + 1 :]
    assert not [
        e
        for e in after
        if e.type == "response.output_audio.delta" and e.response_id == first.response_id
    ]
    # the conversation keeps only what was sent of the cancelled reply
    item = done.response.output[0]
    assert item.status == "incomplete"
    sent = events.audio(first.response_id)
    assert len(sent) < 48 * 8000


async def test_truncate_checks_the_audio_sent_and_drops_the_unheard_words(
    connect: Connect,
) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(
            session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
        )
        await events.until("session.updated")
        await conn.conversation.item.create(
            item={
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Say something long"}],
            }
        )
        await conn.response.create()
        created = await events.until("response.created")
        await events.until("response.output_audio.delta")
        await asyncio.sleep(1.5)
        await conn.response.cancel(event_id="evt_cancel_1")
        done = await events.until("response.done")
        assert done.response.status_details.reason == "client_cancelled"
        item_id = done.response.output[0].id
        sent_ms = len(events.audio(created.response.id)) // 48
        assert sent_ms >= 1000

        await conn.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_trunc_past",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": sent_ms + 500,
            }
        )
        error = await events.until("error")
        assert error.error.code == "invalid_value"
        assert error.error.param == "audio_end_ms"
        assert error.error.event_id == "evt_trunc_past"

        await conn.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "evt_trunc_bad_item",
                "item_id": "item_nope",
                "content_index": 0,
                "audio_end_ms": 10,
            }
        )
        error = await events.until("error")
        assert (error.error.code, error.error.event_id) == ("invalid_value", "evt_trunc_bad_item")

        full = done.response.output[0].content[0].transcript.split()
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=300)
        truncated = await events.until("conversation.item.truncated")
        assert (truncated.item_id, truncated.audio_end_ms) == (item_id, 300)
        await conn.send({"type": "conversation.item.retrieve", "item_id": item_id})
        retrieved = await events.until("conversation.item.retrieved")
        heard = retrieved.item.content[0].transcript.split()
        assert len(heard) < len(full) and full[: len(heard)] == heard
        # and now past the cut is past the audio
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=301)
        error = await events.until("error")
        assert error.error.code == "invalid_value"


async def test_manual_turns_commit_and_response_rules(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(
            session={**SHORT_REPLY, "audio": {"input": {"turn_detection": None}}}
        )
        updated = await events.until("session.updated")
        assert updated.session.audio.input.turn_detection is None

        await stream_audio(conn, silence(60))
        await conn.input_audio_buffer.commit(event_id="evt_commit_short")
        error = await events.until("error")
        assert error.error.code == "input_audio_buffer_commit_empty"
        assert error.error.event_id == "evt_commit_short"

        await stream_audio(conn, speech("Hello there") + silence(300))
        await conn.input_audio_buffer.commit()
        committed = await events.until("input_audio_buffer.committed")
        assert not events.of("input_audio_buffer.speech_started")  # no VAD with null
        assert not events.of("response.created")  # nothing until response.create

        await conn.response.create()
        await events.until("response.created")
        await conn.response.create(event_id="evt_second_create")
        error = await events.until("error")
        assert error.error.code == "conversation_already_has_active_response"
        assert error.error.event_id == "evt_second_create"
        done = await events.until("response.done", within=20)
        assert done.response.status == "incomplete"  # max_output_tokens 6
        assert committed.item_id != done.response.output[0].id

        await conn.response.cancel(event_id="evt_cancel_none")
        error = await events.until("error")
        assert (error.error.code, error.error.event_id) == (
            "response_cancel_not_active",
            "evt_cancel_none",
        )


async def test_turn_detection_fields_are_honoured(connect: Connect) -> None:
    """A long silence_duration_ms keeps a pause inside one turn; create_response false
    detects turns without answering them; a threshold of 1.0 hears nothing."""
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {
                    "input": {
                        "turn_detection": {
                            "type": "server_vad",
                            "silence_duration_ms": 1200,
                            "prefix_padding_ms": 0,
                            "create_response": False,
                            "threshold": 0.5,
                        }
                    }
                },
            }
        )
        await events.until("session.updated")
        await stream_audio(
            conn, speech("One two") + silence(700) + speech("three four") + silence(1500)
        )
        stopped = await events.until("input_audio_buffer.speech_stopped")
        starts = events.of("input_audio_buffer.speech_started")
        assert len(starts) == 1  # the 700 ms pause did not end the turn
        assert stopped.audio_end_ms - starts[0].audio_start_ms > 2000
        await events.until("input_audio_buffer.committed")
        await asyncio.sleep(0.5)
        assert not events.of("response.created")

        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.0}}},
            }
        )
        await events.until("session.updated")
        await stream_audio(conn, speech("Can you hear me") + silence(800))
        await asyncio.sleep(0.3)
        assert len(events.of("input_audio_buffer.speech_started")) == 1


async def test_bad_events_get_errors_and_the_session_goes_on(connect: Connect) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        ws = conn._connection  # the SDK's socket: raw frames the SDK would not build

        await ws.send('{"type": "no.such.event", "event_id": "evt_unknown"}')
        error = await events.until("error")
        assert (error.error.code, error.error.param, error.error.event_id) == (
            "invalid_value",
            "type",
            "evt_unknown",
        )
        await ws.send("{not json")
        error = await events.until("error")
        assert error.error.code == "invalid_json"
        await ws.send(
            '{"type": "conversation.item.truncate", "event_id": "evt_types", '
            '"item_id": "x", "content_index": 0, "audio_end_ms": "ten"}'
        )
        error = await events.until("error")
        assert (error.error.code, error.error.param, error.error.event_id) == (
            "invalid_type",
            "audio_end_ms",
            "evt_types",
        )
        await ws.send(
            '{"type": "input_audio_buffer.append", "event_id": "evt_b64", "audio": "%%%"}'
        )
        error = await events.until("error")
        assert (error.error.code, error.error.event_id) == ("invalid_value", "evt_b64")
        await conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 7}}},
            },
            event_id="evt_threshold",
        )
        error = await events.until("error")
        assert error.error.param == "session.audio.input.turn_detection.threshold"
        assert error.error.event_id == "evt_threshold"

        # limits: audio per append, then events per second (20/s, bursts of 40)
        big = "A" * (15 * 1024 * 1024 // 3 * 4 + 400)  # REALTIME_MAX_APPEND_BYTES (OpenAI's)
        await ws.send(
            f'{{"type":"input_audio_buffer.append","event_id":"evt_big","audio":"{big}"}}'
        )
        error = await events.until("error")
        assert (error.error.code, error.error.event_id) == ("audio_too_large", "evt_big")
        await asyncio.sleep(2.1)  # a full bucket
        for n in range(60):
            await ws.send(f'{{"type":"input_audio_buffer.clear","event_id":"evt_flood_{n}"}}')
        limited = await events.until(
            lambda e: e.type == "error" and e.error.code == "rate_limit_exceeded"
        )
        assert limited.error.type == "rate_limit_error"
        await asyncio.sleep(1.0)

        # ...and the session still answers
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
        updated = await events.until("session.updated")
        assert updated.session.instructions == "Be brief."


async def test_with_interrupt_response_false_speech_does_not_cancel_the_reply(
    connect: Connect,
) -> None:
    async with connect() as conn:
        events = Events(conn)
        await events.until("session.created")
        await conn.session.update(
            session={
                "type": "realtime",
                "max_output_tokens": 14,
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "interrupt_response": False}}
                },
            }
        )
        await events.until("session.updated")
        await stream_audio(conn, speech("Tell me a story") + silence(700))
        first = await events.until("response.output_audio.delta", within=15)
        await stream_audio(conn, silence(300) + speech("Hmm, interesting") + silence(200))
        done = await events.until(
            lambda e: e.type == "response.done" and e.response.id == first.response_id,
            within=20,
        )
        starts = events.of("input_audio_buffer.speech_started")
        assert len(starts) == 2  # the user was heard during the reply...
        assert events.seen.index(starts[1]) < events.seen.index(done)
        assert done.response.status != "cancelled"  # ...and the reply went on
        assert done.response.status_details.reason == "max_output_tokens"
