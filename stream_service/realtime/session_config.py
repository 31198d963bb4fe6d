"""The session object of session.created / session.updated, and session.update's checks.

The whole object is kept as OpenAI renders it (a dict); :class:`TurnDetection` and
:class:`VoiceConfig` are the typed views the local stand-in reads.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Literal

from stream_service.realtime.protocol import ProtocolError

PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}
SAMPLE_RATE = 24000

# semantic_vad is approximated by silence lengths (the stand-in has no semantic model).
SEMANTIC_SILENCE_MS = {"low": 1500, "medium": 800, "auto": 800, "high": 350}


def default_session(session_id: str, model: str, max_session_s: float) -> dict[str, Any]:
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "prompt": None,
        "include": None,
        "expires_at": int(time.time() + max_session_s),
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(PCM_FORMAT), "voice": "alloy", "speed": 1.0},
        },
    }


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``update`` applied (objects merged, anything else replaced), checked.

    Raises :class:`ProtocolError` (``invalid_value`` / ``invalid_type``) naming the field."""
    if "id" in update or "object" in update or "expires_at" in update:
        update = {k: v for k, v in update.items() if k not in ("id", "object", "expires_at")}
    merged = _merge(copy.deepcopy(current), update)
    _check(merged)
    return merged


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            # turn_detection switching type starts from that type's defaults
            if key == "turn_detection" and value.get("type", base[key].get("type")) != base[
                key
            ].get("type"):
                base[key] = dict(value)
            else:
                base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _fail(param: str, message: str, code: str = "invalid_value") -> ProtocolError:
    return ProtocolError(message, code, param=f"session.{param}")


def _check(s: dict[str, Any]) -> None:
    if s.get("type") != "realtime":
        raise _fail("type", "Only 'realtime' sessions are served here.")
    modalities = s.get("output_modalities")
    if modalities not in (["audio"], ["text"]):
        raise _fail("output_modalities", "output_modalities must be ['audio'] or ['text'].")
    if not isinstance(s.get("instructions"), str):
        raise _fail("instructions", "instructions must be a string.", "invalid_type")
    tokens = s.get("max_output_tokens")
    if tokens != "inf" and not (isinstance(tokens, int) and 1 <= tokens <= 4096):
        raise _fail("max_output_tokens", "max_output_tokens must be 1-4096 or 'inf'.")
    audio = s.get("audio")
    if not isinstance(audio, dict):
        raise _fail("audio", "audio must be an object.", "invalid_type")
    for side in ("input", "output"):
        part = audio.get(side)
        if not isinstance(part, dict):
            raise _fail(f"audio.{side}", f"audio.{side} must be an object.", "invalid_type")
        fmt = part.get("format")
        if not isinstance(fmt, dict) or fmt.get("type", "audio/pcm") != "audio/pcm":
            raise _fail(
                f"audio.{side}.format", "Only audio/pcm (PCM16, 24 kHz, mono) is supported."
            )
        if fmt.get("rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise _fail(f"audio.{side}.format.rate", "The only supported rate is 24000.")
    _check_turn_detection(audio["input"].get("turn_detection"))
    transcription = audio["input"].get("transcription")
    if transcription is not None:
        if not isinstance(transcription, dict):
            raise _fail(
                "audio.input.transcription",
                "transcription must be an object or null.",
                "invalid_type",
            )
        language = transcription.get("language")
        if language not in (None, "", "en"):
            raise _fail(
                "audio.input.transcription.language",
                "The local stand-in transcribes English ('en') only.",
            )


def _check_turn_detection(td: Any) -> None:
    param = "audio.input.turn_detection"
    if td is None:
        return
    if not isinstance(td, dict):
        raise _fail(param, "turn_detection must be an object or null.", "invalid_type")
    kind = td.get("type")
    if kind not in ("server_vad", "semantic_vad"):
        raise _fail(f"{param}.type", "turn_detection.type must be 'server_vad' or 'semantic_vad'.")
    checks: dict[str, tuple[type, float, float]] = {
        "threshold": (float, 0.0, 1.0),
        "prefix_padding_ms": (int, 0, 10_000),
        "silence_duration_ms": (int, 0, 10_000),
        "idle_timeout_ms": (int, 5_000, 30_000),
    }
    for name, (kind_, low, high) in checks.items():
        value = td.get(name)
        if value is None:
            continue
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if kind_ is int:
            ok = ok and float(value).is_integer()
        if not ok or not low <= value <= high:
            raise _fail(f"{param}.{name}", f"{name} must be a number from {low:g} to {high:g}.")
    for name in ("create_response", "interrupt_response"):
        if td.get(name) is not None and not isinstance(td[name], bool):
            raise _fail(f"{param}.{name}", f"{name} must be a boolean.", "invalid_type")
    eagerness = td.get("eagerness")
    if eagerness is not None and eagerness not in SEMANTIC_SILENCE_MS:
        raise _fail(f"{param}.eagerness", "eagerness must be low, medium, high or auto.")


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
