"""The stand-in's server VAD (silero on espeak-ng speech): starts, stops, padding,
silence length and threshold as turn_detection sets them."""

from __future__ import annotations

from stream_service.realtime.local.vad import SpeechStarted, SpeechStopped, TurnDetector
from stream_service.realtime.session_config import TurnDetection
from tests.support.speech import silence, speech


def turn(**fields: object) -> TurnDetection:
    values: dict[str, object] = {
        "kind": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "create_response": True,
        "interrupt_response": True,
        "idle_timeout_ms": None,
    }
    values.update(fields)
    return TurnDetection(**values)  # type: ignore[arg-type]


def run(detector: TurnDetector, pcm: bytes, chunk_ms: int = 100) -> list[object]:
    events: list[object] = []
    step = chunk_ms * 48
    for offset in range(0, len(pcm), step):
        events.extend(detector.push(pcm[offset : offset + step], 0))
    return events


def test_one_utterance_is_one_turn_with_its_padding() -> None:
    utterance = speech("Good morning everyone")
    events = run(TurnDetector(turn()), silence(1000) + utterance + silence(1000))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    start, stop = events
    assert isinstance(start, SpeechStarted) and isinstance(stop, SpeechStopped)
    assert 1000 - 300 - 100 <= start.audio_start_ms <= 1000 - 300 + 150
    clip_end = 1000 + len(utterance) // 48  # espeak-ng ends its clip with ~0.2-0.3 s of quiet
    assert clip_end - 400 + 500 <= stop.audio_end_ms <= clip_end + 500 + 150


def test_silence_duration_decides_whether_a_pause_ends_the_turn() -> None:
    audio = speech("One two") + silence(700) + speech("three four") + silence(1500)
    assert len(run(TurnDetector(turn(silence_duration_ms=300)), audio)) == 4
    assert len(run(TurnDetector(turn(silence_duration_ms=1200)), audio)) == 2


def test_threshold_one_hears_nothing_and_silence_is_never_speech() -> None:
    assert run(TurnDetector(turn(threshold=1.0)), speech("Can you hear me") + silence(800)) == []
    assert run(TurnDetector(turn(threshold=0.1)), silence(3000)) == []
