"""Reply speech with espeak-ng (Debian's ``espeak-ng``, GPL-3.0-or-later, run as a program:
no model download, ~25 ms a sentence on one core). Its 22,050 Hz output is resampled to the
protocol's 24 kHz PCM16."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np

from stream_service.realtime.local.audio import RATE, resample_pcm16

ESPEAK_RATE = 22_050
_WAV_HEADER = 44


class SpeechUnavailable(RuntimeError):
    pass


class Speaker:
    def __init__(self, voice: str, wpm: int, binary: str = "espeak-ng") -> None:
        self._voice = voice
        self._wpm = wpm
        path = shutil.which(binary)
        if path is None:
            raise SpeechUnavailable(
                f"'{binary}' is not installed (Debian: apt-get install espeak-ng); the local "
                "voice stand-in needs it for its replies."
            )
        self._binary = path

    async def speak(self, text: str) -> bytes:
        """``text`` as 24 kHz PCM16, with the silence espeak-ng puts at the end trimmed."""
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "-v",
            self._voice,
            "-s",
            str(self._wpm),
            "--stdout",
            "--",
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            wav, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        pcm = wav[_WAV_HEADER:] if wav[:4] == b"RIFF" else wav
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        return resample_pcm16(_trim_tail(pcm), ESPEAK_RATE, RATE)


def _trim_tail(pcm: bytes, keep_ms: int = 60) -> bytes:
    """Drop trailing near-silence beyond ``keep_ms`` (phrases are joined back to back)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 64)
    if not len(loud):
        return b""
    end = min(len(samples), int(loud[-1]) + 1 + ESPEAK_RATE * keep_ms // 1000)
    return samples[:end].tobytes()
