"""Client frames (SPEC section 6), decoded and validated; server frames built here.

A frame that is not a JSON object with a known ``type`` and valid fields is answered with
an ``error`` (``invalid_message`` / ``unknown_type``) and the socket stays usable.
"""

from __future__ import annotations

from typing import Any

import msgspec

from core import json_input
from core.ids import STREAM_ID

_encode = msgspec.json.encode


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


class RoomSend(msgspec.Struct, forbid_unknown_fields=True):
    room: str = msgspec.field()
    content: str = msgspec.field()
    model: str | None = None
    ref: str | None = None


class Join(msgspec.Struct, forbid_unknown_fields=True):
    room: str


class Typing(msgspec.Struct, forbid_unknown_fields=True):
    room: str
    active: bool


class Resume(msgspec.Struct, forbid_unknown_fields=True):
    stream_id: str
    after_seq: int = 0


class Cancel(msgspec.Struct, forbid_unknown_fields=True):
    stream_id: str


TYPES = ("chat.send", "join", "leave", "typing", "resume", "cancel", "ping")
_MAX_ID = 128


def decode(data: str | bytes) -> tuple[str, dict[str, Any]]:
    """(type, the other fields) of a client frame, or :class:`ProtocolError`."""
    try:
        raw = json_input.decode(data)  # deep nesting and invalid UTF-8 included
    except msgspec.DecodeError:
        raise ProtocolError("invalid_message", "A frame must be a JSON object.") from None
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_message", "A frame must be a JSON object.")
    ref = raw.get("ref")
    ref = ref[:_MAX_ID] if isinstance(ref, str) else None
    kind = raw.pop("type", None)
    if not isinstance(kind, str):
        raise ProtocolError("invalid_message", "A frame needs a string 'type'.", ref)
    if kind not in TYPES:
        known = ", ".join(TYPES)
        raise ProtocolError("unknown_type", f"Unknown type {kind[:40]!r}; one of: {known}.", ref)
    return kind, raw


def fields(kind: type[Any], raw: dict[str, Any]) -> Any:
    """The frame's fields as ``kind`` (a Struct), or :class:`ProtocolError`."""
    ref = raw.get("ref") if isinstance(raw.get("ref"), str) else None
    if "ref" in raw and "ref" not in kind.__struct_fields__:
        # `ref` is the envelope's (echoed on errors) on any frame, not an unknown field
        raw = {key: item for key, item in raw.items() if key != "ref"}
    try:
        value = json_input.convert(raw, kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProtocolError("invalid_message", f"Invalid frame: {exc}.", ref) from None
    room = getattr(value, "room", None)
    if isinstance(room, str) and not (0 < len(room) <= _MAX_ID):
        raise ProtocolError("invalid_message", f"'room' must be 1-{_MAX_ID} chars.", ref)
    stream_id = getattr(value, "stream_id", None)
    if isinstance(stream_id, str) and not STREAM_ID.is_valid(stream_id):
        # the same answer as an unknown id, before any store call
        raise ProtocolError("stream_not_found", STREAM_ID.not_found(stream_id).message, ref)
    after = getattr(value, "after_seq", 0)
    if after < 0:
        raise ProtocolError("invalid_message", "'after_seq' must be >= 0.", ref)
    return value


# --- server frames ------------------------------------------------------------------------
def error_frame(
    code: str, message: str, ref: str | None = None, stream_id: str | None = None
) -> bytes:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if stream_id is not None:
        frame["stream_id"] = stream_id
    return _encode(frame)


def created_frame(ref: str | None, stream_id: str, room: str | None) -> bytes:
    frame: dict[str, Any] = {"type": "stream.created", "ref": ref, "stream_id": stream_id}
    if room is not None:
        frame["room"] = room
    return _encode(frame)


PONG = b'{"type":"pong"}'
