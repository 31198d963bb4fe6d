"""OpenAI Realtime (GA) session and response parameters, checked as OpenAI checks them.

The shapes follow openai-python's ``types/realtime`` (``RealtimeSessionCreateRequestParam``,
``RealtimeResponseCreateParamsParam`` and what they hold): the same field names, types,
ranges and enums. An unknown field (a beta-era ``turn_detection`` at the top level, say)
is ``unknown_parameter``; a wrong type or an out-of-range value is ``invalid_value``; a
missing ``type`` is ``missing_required_parameter``; each names its ``param``. Used by
``session.update`` / ``response.create`` on the voice socket and by
``POST /api/v1/realtime/client_secrets``.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType


class RealtimeParamError(Exception):
    def __init__(self, message: str, code: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class _Strict(Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# --- audio ----------------------------------------------------------------------------------


class AudioPCM(_Strict, tag_field="type", tag="audio/pcm"):
    rate: Literal[24000] | UnsetType = UNSET


class AudioPCMU(_Strict, tag_field="type", tag="audio/pcmu"):
    pass


class AudioPCMA(_Strict, tag_field="type", tag="audio/pcma"):
    pass


AudioFormat = AudioPCM | AudioPCMU | AudioPCMA
Ms = Annotated[int, Meta(ge=0)]


class ServerVad(_Strict, tag_field="type", tag="server_vad"):
    create_response: bool | UnsetType = UNSET
    idle_timeout_ms: Annotated[int, Meta(ge=5_000, le=30_000)] | None = None
    interrupt_response: bool | UnsetType = UNSET
    prefix_padding_ms: Ms | UnsetType = UNSET
    silence_duration_ms: Ms | UnsetType = UNSET
    threshold: Annotated[float, Meta(ge=0.0, le=1.0)] | UnsetType = UNSET


class SemanticVad(_Strict, tag_field="type", tag="semantic_vad"):
    create_response: bool | UnsetType = UNSET
    eagerness: Literal["low", "medium", "high", "auto"] | UnsetType = UNSET
    interrupt_response: bool | UnsetType = UNSET


class NoiseReduction(_Strict):
    type: Literal["near_field", "far_field"] | UnsetType = UNSET
    strength: Annotated[float, Meta(ge=0.0)] | UnsetType = UNSET


class Transcription(_Strict):
    model: str | UnsetType = UNSET
    language: str | UnsetType = UNSET
    prompt: str | UnsetType = UNSET
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | UnsetType = UNSET
    keywords: list[str] | UnsetType = UNSET
    languages: list[str] | UnsetType = UNSET


class AudioInput(_Strict):
    format: AudioFormat | UnsetType = UNSET
    noise_reduction: NoiseReduction | None = None
    transcription: Transcription | None = None
    turn_detection: ServerVad | SemanticVad | None = None


class VoiceId(_Strict):
    id: str


Speed = Annotated[float, Meta(ge=0.25, le=1.5)]


class AudioOutput(_Strict):
    format: AudioFormat | UnsetType = UNSET
    speed: Speed | UnsetType = UNSET
    voice: str | VoiceId | UnsetType = UNSET


class AudioConfig(_Strict):
    input: AudioInput | UnsetType = UNSET
    output: AudioOutput | UnsetType = UNSET


# --- tools ----------------------------------------------------------------------------------


class FunctionTool(_Strict, tag_field="type", tag="function"):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | UnsetType = UNSET
    parameters: dict[str, Any] | UnsetType = UNSET


class McpTool(Struct, tag_field="type", tag="mcp", kw_only=True):  # many fields: not checked
    server_label: str


class ToolChoiceFunction(_Strict, tag_field="type", tag="function"):
    name: str


class ToolChoiceMcp(_Strict, tag_field="type", tag="mcp"):
    server_label: str
    name: str | None = None


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction | ToolChoiceMcp
MaxTokens = Annotated[int, Meta(ge=1, le=4096)] | Literal["inf"]
Modalities = list[Literal["text", "audio"]]


class Prompt(_Strict):
    id: str
    variables: dict[str, Any] | None = None
    version: str | None = None


class Reasoning(_Strict):
    effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None


class TracingConfiguration(_Strict):
    group_id: str | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    workflow_name: str | UnsetType = UNSET


class RetentionRatio(_Strict, tag_field="type", tag="retention_ratio"):
    retention_ratio: Annotated[float, Meta(ge=0.0, le=1.0)]
    token_limits: dict[str, Any] | UnsetType = UNSET


# --- the two objects ------------------------------------------------------------------------


class _ModelParams(_Strict):
    """What a session and a response both set for the model."""

    instructions: str | UnsetType = UNSET
    max_output_tokens: MaxTokens | UnsetType = UNSET
    output_modalities: Modalities | UnsetType = UNSET
    parallel_tool_calls: bool | UnsetType = UNSET
    prompt: Prompt | None = None
    reasoning: Reasoning | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    tools: list[FunctionTool | McpTool] | UnsetType = UNSET


class SessionParams(_ModelParams, kw_only=True):
    type: Literal["realtime"]
    audio: AudioConfig | UnsetType = UNSET
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    model: str | UnsetType = UNSET
    tracing: Literal["auto"] | TracingConfiguration | None = None
    truncation: Literal["auto", "disabled"] | RetentionRatio | UnsetType = UNSET


class ResponseAudioOutput(_Strict):
    format: AudioFormat | UnsetType = UNSET
    voice: str | VoiceId | UnsetType = UNSET


class ResponseAudio(_Strict):
    output: ResponseAudioOutput | UnsetType = UNSET


MetadataKey = Annotated[str, Meta(max_length=64)]
MetadataValue = Annotated[str, Meta(max_length=512)]


class ResponseParams(_ModelParams):
    audio: ResponseAudio | UnsetType = UNSET
    conversation: Literal["auto", "none"] | UnsetType = UNSET
    input: list[dict[str, Any]] | UnsetType = UNSET
    metadata: dict[MetadataKey, MetadataValue] | None = None


MAX_METADATA_KEYS = 16
_T = TypeVar("_T")
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_FIELD = re.compile(r"field `([^`]*)`")


def check_session(raw: Any, prefix: str = "session") -> SessionParams:
    """``raw`` (a session.update's ``session``) checked, or :class:`RealtimeParamError`."""
    params = _convert(raw, SessionParams, prefix)
    _check_modalities(params.output_modalities, prefix)
    return params


def check_response(raw: Any, prefix: str = "response") -> ResponseParams:
    params = _convert(raw, ResponseParams, prefix)
    _check_modalities(params.output_modalities, prefix)
    if params.metadata is not None and len(params.metadata) > MAX_METADATA_KEYS:
        raise RealtimeParamError(
            f"Invalid '{prefix}.metadata': at most {MAX_METADATA_KEYS} keys.",
            "invalid_value",
            f"{prefix}.metadata",
        )
    return params


def _check_modalities(modalities: Modalities | UnsetType, prefix: str) -> None:
    if modalities is not UNSET and modalities not in (["audio"], ["text"]):
        raise RealtimeParamError(
            f"Invalid '{prefix}.output_modalities': it must be ['audio'] or ['text'] (not "
            "both, not none).",
            "invalid_value",
            f"{prefix}.output_modalities",
        )


def _convert(raw: Any, kind: type[_T], prefix: str) -> _T:
    try:
        return msgspec.convert(raw, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise _error(str(exc), prefix) from exc


def _error(text: str, prefix: str) -> RealtimeParamError:
    match = _AT.search(text)
    where = match.group(1) if match else ""
    detail = _AT.sub("", text)
    path = ".".join(p for p in (prefix, where) if p)
    field = _FIELD.search(detail)
    if detail.startswith("Object contains unknown field") and field:
        param = f"{path}.{field.group(1)}"
        return RealtimeParamError(f"Unknown parameter: '{param}'.", "unknown_parameter", param)
    if detail.startswith("Object missing required field") and field:
        param = f"{path}.{field.group(1)}"
        return RealtimeParamError(
            f"Missing required parameter: '{param}'.", "missing_required_parameter", param
        )
    return RealtimeParamError(f"Invalid '{path}': {detail}.", "invalid_value", path or None)


# --- the session object (session.created, client_secrets) ------------------------------------

PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}
SAMPLE_RATE = 24000


def default_session(session_id: str, model: str, max_session_s: float) -> dict[str, Any]:
    """A new session as OpenAI renders it, with its defaults."""
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
        "truncation": "auto",
        "expires_at": int(time.time() + max_session_s),
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": _turn_defaults("server_vad"),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": "alloy", "speed": 1.0},
        },
    }


def _turn_defaults(kind: str) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": "auto",
            "create_response": True,
            "interrupt_response": True,
        }
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def merge_into(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A session object with a checked update applied: objects merge; a ``turn_detection``
    object replaces the one before (from its type's defaults)."""
    for key, value in update.items():
        if key == "turn_detection" and isinstance(value, dict):
            base[key] = {**_turn_defaults(value["type"]), **value}
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
