from __future__ import annotations

import pytest

from stream_service.realtime.protocol import (
    AudioAppend,
    ItemTruncate,
    ProtocolError,
    decode_client_event,
    read_envelope,
)


def error_of(frame: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode_client_event(frame)
    return caught.value


def test_client_events_decode_by_type() -> None:
    event = decode_client_event(
        '{"type":"conversation.item.truncate","event_id":"e1","item_id":"i","content_index":0,'
        '"audio_end_ms":120}'
    )
    assert isinstance(event, ItemTruncate)
    assert (event.event_id, event.item_id, event.audio_end_ms) == ("e1", "i", 120)
    assert isinstance(
        decode_client_event('{"type":"input_audio_buffer.append","audio":""}'), AudioAppend
    )


def test_an_unknown_type_names_the_supported_ones_and_echoes_the_event_id() -> None:
    error = error_of('{"type":"response.make","event_id":"evt_7"}')
    assert (error.code, error.param, error.event_id) == ("invalid_value", "type", "evt_7")
    assert "'response.create'" in error.message
    event = error.event()
    assert event["type"] == "error"
    assert set(event["error"]) == {"type", "code", "message", "param", "event_id"}


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{nope", "invalid_json", None),
        ("[1, 2]", "invalid_type", None),
        ('{"event_id":"e"}', "missing_required_parameter", "type"),
        (
            '{"type":"input_audio_buffer.append","event_id":"e"}',
            "missing_required_parameter",
            "audio",
        ),
        (
            '{"type":"conversation.item.truncate","event_id":"e","item_id":"i","content_index":0,'
            '"audio_end_ms":"x"}',
            "invalid_type",
            "audio_end_ms",
        ),
        ('{"type":"session.update","event_id":"e","session":[]}', "invalid_type", "session"),
    ],
)
def test_malformed_events(frame: str, code: str, param: str | None) -> None:
    error = error_of(frame)
    assert (error.code, error.param) == (code, param)
    if '"event_id":"e"' in frame:
        assert error.event_id == "e"


def test_the_envelope_reads_only_type_and_id() -> None:
    envelope = read_envelope('{"type":"x","event_id":"y","audio":"' + "A" * 1000 + '"}')
    assert (envelope.type, envelope.event_id) == ("x", "y")
    assert read_envelope("not json").type is None
    assert read_envelope('{"type": 5}').type is None
