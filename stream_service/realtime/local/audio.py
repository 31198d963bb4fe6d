"""PCM16 helpers: the protocol's audio is PCM16 little-endian, 24 kHz, mono."""

from __future__ import annotations

import base64
import binascii

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

from stream_service.realtime.protocol import ProtocolError

RATE = 24_000
BYTES_PER_MS = RATE * 2 // 1000  # 48

Pcm = npt.NDArray[np.int16]


def decode_audio(b64: str, event_id: str | None) -> bytes:
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(
            "audio is not valid base64.", "invalid_value", param="audio", event_id=event_id
        ) from exc
    if len(raw) % 2:
        raise ProtocolError(
            "audio must be whole PCM16 samples (an even number of bytes).",
            "invalid_value",
            param="audio",
            event_id=event_id,
        )
    return raw


def encode_audio(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def ms_of(n_bytes: int) -> int:
    return n_bytes // BYTES_PER_MS


class StreamResampler:
    """24 kHz PCM16 in, ``rate`` float32 out, in pieces (soxr keeps the filter state)."""

    def __init__(self, rate_out: int) -> None:
        self._stream = soxr.ResampleStream(RATE, rate_out, 1, dtype="float32", quality="HQ")

    def push(self, pcm: bytes) -> npt.NDArray[np.float32]:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        out: npt.NDArray[np.float32] = self._stream.resample_chunk(samples)
        return out


def resample_pcm16(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    """A whole PCM16 clip at another rate."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if rate_in == rate_out or not len(samples):
        return pcm
    out = soxr.resample(samples, rate_in, rate_out, quality="HQ")
    return np.asarray(out, dtype="<i2").tobytes()
