"""OpenAI Realtime (GA) event shapes: the client events the stand-in reads, the errors.

Client events are decoded in one step into tagged msgspec structs (the event ``type`` is
the tag); a message that is not JSON, names an unknown type or has a field of the wrong
type becomes a :class:`ProtocolError` in OpenAI's error shape, with the client's
``event_id`` echoed. Server events are plain dicts (see :mod:`.events`).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

import msgspec

from core import json_input

ErrorType = Literal["invalid_request_error", "server_error", "rate_limit_error"]

# Close codes: 1000 a normal end; 1008 refused (auth, limits, unknown session); 1011 the
# upstream failed; 1012 the node is restarting (start a new session elsewhere); 1013 the
# client read too slowly (it may resume).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_UPSTREAM = 1011
CLOSE_RESTART = 1012
CLOSE_SLOW = 1013


class ProtocolError(Exception):
    """An ``error`` event for the client; the session goes on unless the caller ends it."""

    def __init__(
        self,
        message: str,
        code: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
        type: ErrorType = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id
        self.type = type

    def event(self) -> dict[str, Any]:
        return error_event(self.message, self.code, self.param, self.event_id, self.type)


def error_event(
    message: str,
    code: str,
    param: str | None = None,
    event_id: str | None = None,
    type: ErrorType = "invalid_request_error",
) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


# --- client events ------------------------------------------------------------------------


class _Client(msgspec.Struct, tag_field="type", kw_only=True):
    event_id: str | None = None


class SessionUpdate(_Client, tag="session.update"):
    session: dict[str, Any]


class AudioAppend(_Client, tag="input_audio_buffer.append"):
    audio: str


class AudioCommit(_Client, tag="input_audio_buffer.commit"):
    pass


class AudioClear(_Client, tag="input_audio_buffer.clear"):
    pass


class ItemCreate(_Client, tag="conversation.item.create"):
    item: dict[str, Any]
    previous_item_id: str | None = None


class ItemTruncate(_Client, tag="conversation.item.truncate"):
    item_id: str
    content_index: int
    audio_end_ms: int


class ItemDelete(_Client, tag="conversation.item.delete"):
    item_id: str


class ItemRetrieve(_Client, tag="conversation.item.retrieve"):
    item_id: str


class ResponseCreate(_Client, tag="response.create"):
    response: dict[str, Any] | None = None


class ResponseCancel(_Client, tag="response.cancel"):
    response_id: str | None = None


class OutputAudioClear(_Client, tag="output_audio_buffer.clear"):
    pass


ClientEvent = (
    SessionUpdate
    | AudioAppend
    | AudioCommit
    | AudioClear
    | ItemCreate
    | ItemTruncate
    | ItemDelete
    | ItemRetrieve
    | ResponseCreate
    | ResponseCancel
    | OutputAudioClear
)
CLIENT_EVENT_TYPES = tuple(sorted(str(cls.__struct_config__.tag) for cls in ClientEvent.__args__))


class Envelope(msgspec.Struct):
    """What every frame is read for cheaply: its type and id (the relay reads no more)."""

    type: str | None = None
    event_id: str | None = None


_client_decoder = msgspec.json.Decoder(ClientEvent)
_envelope_decoder = msgspec.json.Decoder(Envelope)
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def read_envelope(data: str | bytes) -> Envelope:
    """The type and event_id of a frame; a frame that is not a JSON object has neither."""
    try:
        return json_input.decode(data, decoder=_envelope_decoder)  # type: ignore[no-any-return]
    except msgspec.DecodeError:
        return Envelope()  # not JSON, or type / event_id are not strings


def decode_client_event(data: str | bytes) -> ClientEvent:
    try:
        event: ClientEvent = json_input.decode(data, decoder=_client_decoder)
        return event
    except msgspec.DecodeError as exc:
        if not isinstance(exc, msgspec.ValidationError):
            raise ProtocolError(
                "The event is not valid JSON.", "invalid_json", event_id=None
            ) from exc
        envelope = read_envelope(data)
        raise _validation_error(str(exc), envelope) from exc


def _validation_error(text: str, envelope: Envelope) -> ProtocolError:
    match = _PATH.search(text)
    param = match.group(1) if match else None
    detail = _PATH.sub("", text)
    if param == "type" or (envelope.type is None and "type" in detail):
        if envelope.type is None:
            return ProtocolError(
                "The event has no 'type'.",
                "missing_required_parameter",
                param="type",
                event_id=envelope.event_id,
            )
        return ProtocolError(
            f"Invalid value: '{envelope.type}'. Supported values are: "
            + ", ".join(f"'{name}'" for name in CLIENT_EVENT_TYPES)
            + ".",
            "invalid_value",
            param="type",
            event_id=envelope.event_id,
        )
    if detail.startswith("Object missing required field"):
        field = detail.split("`")[1] if "`" in detail else None
        name = f"{param}.{field}" if param and field else field
        return ProtocolError(
            f"Missing required parameter: '{name}'.",
            "missing_required_parameter",
            param=name,
            event_id=envelope.event_id,
        )
    if envelope.type is None and param is None:
        return ProtocolError(
            "An event must be a JSON object.", "invalid_type", event_id=envelope.event_id
        )
    return ProtocolError(
        f"Invalid '{param}': {detail}.", "invalid_type", param=param, event_id=envelope.event_id
    )
