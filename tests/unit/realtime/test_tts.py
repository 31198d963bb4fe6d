"""Reply speech: espeak-ng's output as the protocol's 24 kHz PCM16, with speech in it."""

from __future__ import annotations

import pytest

from stream_service.realtime.local.tts import Speaker, SpeechUnavailable
from tests.support.speech import speech_ms


async def test_a_phrase_becomes_24khz_speech() -> None:
    pcm = await Speaker("en-us", 175).speak("The first token matters more than the last one.")
    seconds = len(pcm) / 48_000
    assert 1.5 < seconds < 5
    assert speech_ms(pcm) > 1000


def test_a_missing_engine_is_a_clear_error() -> None:
    with pytest.raises(SpeechUnavailable, match="apt-get install espeak-ng"):
        Speaker("en-us", 175, binary="espeak-ng-not-installed")
