"""Voice knobs (``/stream/v1/realtime``), read from the environment once.

``REALTIME_RESUME_GRACE_S`` is the SPEC section 2 setting; the rest are the limits and
tuning listed in docs/limits.md and docs/voice.md.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RealtimeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REALTIME_", case_sensitive=False, extra="ignore", frozen=True
    )

    # How long a session (and its upstream) stays open with no client, waiting for a resume.
    resume_grace_s: float = Field(default=15.0, ge=0)
    # Server events kept per session for resumes: those of the last RESUME_BUFFER_S seconds
    # (at least the grace), at most RESUME_BUFFER_BYTES of them (reply audio is ~64 KB/s).
    resume_buffer_s: float = Field(default=30.0, gt=0)
    resume_buffer_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    # Concurrent voice sessions per user on one node (sessions waiting for a resume count:
    # a reloaded page starts a new session while its old one waits out the grace).
    max_sessions_per_user: int = Field(default=3, ge=1)
    # A session's whole length (OpenAI's sessions end after 60 minutes too).
    max_session_s: float = Field(default=3600.0, gt=0)
    # One client event (a JSON text frame), in bytes: OpenAI's sizes (an append of 15 MiB of
    # audio is 20 MiB as base64). The voice socket's frame cap is this, not
    # WS_MAX_MESSAGE_BYTES (stream_service/realtime/frames.py); a bigger frame is closed
    # with 1009 before it is read.
    max_event_bytes: int = Field(default=21 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Decoded audio bytes in one input_audio_buffer.append (PCM16 24 kHz: 48,000 bytes = 1 s;
    # OpenAI's limit is 15 MiB). Base64 makes it 4/3 larger: it must fit in MAX_EVENT_BYTES.
    max_append_bytes: int = Field(default=15 * 1024 * 1024, ge=4800)
    # Client events per second (a token bucket of this rate and a burst of twice it). A
    # microphone sending 20 ms appends makes 50 a second. input_audio_buffer.commit,
    # response.create, response.cancel and session.update are never refused by it.
    max_events_per_s: float = Field(default=200.0, gt=0)
    # Uncommitted input audio held by the local stand-in (PCM16 24 kHz: 48,000 bytes = 1 s).
    max_input_buffer_s: float = Field(default=120.0, gt=0)
    # Local stand-in: reply audio is paced at this multiple of real time (1.0 = real time,
    # what a listener gets; tests keep it).
    local_pace: float = Field(default=1.0, ge=1.0, le=10.0)
    # Local stand-in: reply audio may run this far ahead of real time (a client's jitter buffer).
    local_audio_lead_ms: int = Field(default=200, ge=0, le=2000)
    # Local stand-in: the espeak-ng voice and words per minute of the reply speech.
    local_tts_voice: str = "en-us"
    local_tts_wpm: int = Field(default=175, ge=80, le=450)
    # Local stand-in: worker processes for input transcription (pocketsphinx).
    asr_workers: int = Field(default=1, ge=1, le=16)
    # The relay: how long to wait for the upstream's handshake.
    upstream_connect_timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> RealtimeSettings:
        if self.resume_buffer_s < self.resume_grace_s:
            raise ValueError("REALTIME_RESUME_BUFFER_S must be at least REALTIME_RESUME_GRACE_S")
        if self.max_append_bytes * 4 // 3 + 256 > self.max_event_bytes:
            raise ValueError(
                "REALTIME_MAX_APPEND_BYTES (as base64) must fit in REALTIME_MAX_EVENT_BYTES"
            )
        return self


@lru_cache(maxsize=1)
def get_realtime_settings() -> RealtimeSettings:
    return RealtimeSettings()
