from __future__ import annotations

import pytest

from core.schemas.realtime import default_session
from stream_service.realtime.protocol import ProtocolError
from stream_service.realtime.session_config import VoiceConfig, merge_session


def base() -> dict:
    return default_session("sess_1", "gpt-realtime", 3600)


def test_defaults_are_openais() -> None:
    config = VoiceConfig.of(base())
    assert config.turn_detection is not None
    td = config.turn_detection
    assert (td.kind, td.threshold, td.prefix_padding_ms, td.silence_duration_ms) == (
        "server_vad",
        0.5,
        300,
        500,
    )
    assert td.create_response and td.interrupt_response
    assert not config.transcribe and config.audio_out


def test_updates_merge_and_null_turns_detection_off() -> None:
    vad = {"type": "server_vad", "threshold": 0.8}
    merged = merge_session(
        base(), {"type": "realtime", "audio": {"input": {"turn_detection": vad}}}
    )
    td = VoiceConfig.of(merged).turn_detection
    assert td is not None and td.threshold == 0.8 and td.silence_duration_ms == 500
    off = merge_session(merged, {"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    assert VoiceConfig.of(off).turn_detection is None
    assert off["audio"]["output"]["voice"] == "alloy"  # untouched parts stay


def test_semantic_vad_maps_eagerness_to_silence() -> None:
    merged = merge_session(
        base(),
        {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}},
        },
    )
    td = VoiceConfig.of(merged).turn_detection
    assert td is not None and td.kind == "semantic_vad" and td.silence_duration_ms == 350


@pytest.mark.parametrize(
    ("update", "param"),
    [
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}},
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 12.5}}
                }
            },
            "session.audio.input.turn_detection.silence_duration_ms",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "magic"}}}},
            "session.audio.input.turn_detection.type",
        ),
        (
            {
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "create_response": "yes"}}
                }
            },
            "session.audio.input.turn_detection.create_response",
        ),
        ({"audio": {"input": {"format": {"type": "audio/pcmu"}}}}, "session.audio.input.format"),
        (
            {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "session.audio.output.format.rate",
        ),
        ({"output_modalities": ["audio", "text"]}, "session.output_modalities"),
        ({"max_output_tokens": 0}, "session.max_output_tokens"),
        ({"type": "transcription"}, "session.type"),
    ],
)
def test_bad_updates_name_the_field(update: dict, param: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        merge_session(base(), {"type": "realtime", **update})
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("update", "code", "param"),
    [
        (
            {"type": "realtime", "turn_detection": None},
            "unknown_parameter",
            "session.turn_detection",
        ),
        ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice"),
        ({"type": "realtime", "modalities": ["text"]}, "unknown_parameter", "session.modalities"),
        ({"type": "realtime", "instructions": 5}, "invalid_value", "session.instructions"),
        (
            {"type": "realtime", "output_modalities": "text"},
            "invalid_value",
            "session.output_modalities",
        ),
        (
            {"type": "realtime", "output_modalities": ["video"]},
            "invalid_value",
            "session.output_modalities[0]",
        ),
        (
            {"type": "realtime", "audio": {"input": {"turn_detection": {"threshold": 0.2}}}},
            "missing_required_parameter",
            "session.audio.input.turn_detection.type",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.2}}},
            },
            "unknown_parameter",
            "session.audio.input.turn_detection.threshold",
        ),
        ({"instructions": "hi"}, "missing_required_parameter", "session.type"),
        (
            {"type": "realtime", "audio": {"output": {"speed": 3}}},
            "invalid_value",
            "session.audio.output.speed",
        ),
    ],
)
def test_updates_are_checked_as_openai_checks_them(update: dict, code: str, param: str) -> None:
    """Unknown (beta-era) fields, wrong types and ranges (openai-python's types/realtime)."""
    with pytest.raises(ProtocolError) as caught:
        merge_session(base(), update)
    assert (caught.value.code, caught.value.param) == (code, param)
