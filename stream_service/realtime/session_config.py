"""The session object of session.created / session.updated, and session.update's checks.

The whole object is kept as OpenAI renders it (a dict); :class:`TurnDetection` and
:class:`VoiceConfig` are the typed views the local stand-in reads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from core.schemas.realtime import RealtimeParamError, check_session, merge_into
from stream_service.realtime.protocol import ProtocolError

SAMPLE_RATE = 24000

# semantic_vad is approximated by silence lengths (the stand-in has no semantic model).
SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 350}


def merge_session(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """``current`` with ``update`` (a ``session.update``'s ``session``) applied: checked as
    OpenAI checks it first (:func:`core.schemas.realtime.check_session`), then against
    what the local stand-in can do. Objects merge; a ``turn_detection`` object replaces
    the one before (from its type's defaults). Raises :class:`ProtocolError` naming the
    field, and then nothing has changed."""
    try:
        check_session(update)
    except RealtimeParamError as exc:
        raise ProtocolError(exc.message, exc.code, param=exc.param) from exc
    merged = merge_into(copy.deepcopy(current), update)
    _check(merged)
    return merged


def _fail(param: str, message: str, code: str = "invalid_value") -> ProtocolError:
    return ProtocolError(message, code, param=f"session.{param}")


def _check(s: dict[str, Any]) -> None:
    """What the stand-in cannot do (the shape was checked before the merge)."""
    for side in ("input", "output"):
        fmt = s["audio"][side]["format"]
        if fmt.get("type", "audio/pcm") != "audio/pcm":
            raise _fail(
                f"audio.{side}.format",
                "The local stand-in speaks audio/pcm (PCM16, 24 kHz, mono) only.",
            )
    transcription = s["audio"]["input"].get("transcription")
    if transcription is not None and transcription.get("language") not in (None, "", "en"):
        raise _fail(
            "audio.input.transcription.language",
            "The local stand-in transcribes English ('en') only.",
        )


@dataclass(frozen=True, slots=True)
class TurnDetection:
    kind: Literal["server_vad", "semantic_vad"]
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    create_response: bool
    interrupt_response: bool
    idle_timeout_ms: int | None


@dataclass(frozen=True, slots=True)
class VoiceConfig:
    """What the local stand-in needs from the session object."""

    turn_detection: TurnDetection | None
    transcribe: bool
    instructions: str
    audio_out: bool
    max_output_tokens: int | None

    @classmethod
    def of(cls, session: dict[str, Any]) -> VoiceConfig:
        audio_in = session["audio"]["input"]
        td = audio_in.get("turn_detection")
        turn: TurnDetection | None = None
        if td is not None:
            kind = td["type"]
            silence = td.get("silence_duration_ms")
            if kind == "semantic_vad":
                silence = SEMANTIC_SILENCE_MS[td.get("eagerness") or "auto"]
            turn = TurnDetection(
                kind=kind,
                threshold=float(td.get("threshold") if td.get("threshold") is not None else 0.5),
                prefix_padding_ms=int(td.get("prefix_padding_ms") or 0)
                if td.get("prefix_padding_ms") is not None
                else 300,
                silence_duration_ms=int(silence) if silence is not None else 500,
                create_response=td.get("create_response") is not False,
                interrupt_response=td.get("interrupt_response") is not False,
                idle_timeout_ms=td.get("idle_timeout_ms"),
            )
        tokens = session.get("max_output_tokens")
        return cls(
            turn_detection=turn,
            transcribe=audio_in.get("transcription") is not None,
            instructions=session.get("instructions") or "",
            audio_out=session.get("output_modalities") != ["text"],
            max_output_tokens=tokens if isinstance(tokens, int) else None,
        )
