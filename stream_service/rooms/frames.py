"""Room frames as SPEC section 6 writes them (JSON text frames), and the room service's
own messages on the bus.

Bus payloads on channel ``room:<id>`` start with a one-byte kind:
- ``M`` <message id> NUL <frame>: a new conversation message (frame: ``message``).
- ``E`` <stream id> NUL <seq> NUL <frame>: one live event of a room reply, frame as the
  WebSocket transport rendered it (``status`` / ``delta`` / ``done`` / ``error``).
- ``T`` <JSON {"user", "active"}>: a typing state (each node renders and expires it).
- ``P`` <JSON {"node", "users"}>: a node's full list of users present in the room.
- ``S`` <node id>: a node asks the others for their ``P`` now (first join, reconnect).
"""

from __future__ import annotations

from typing import Any

import msgspec

from stream_service.store.rooms_base import RoomMessage

_encode = msgspec.json.encode


class Heartbeat(msgspec.Struct, frozen=True):
    node: str
    users: list[str]


class TypingState(msgspec.Struct, frozen=True):
    user: str
    active: bool


class _Author(msgspec.Struct):
    user: str
    role: str


heartbeat_decoder = msgspec.json.Decoder(Heartbeat)
_author_decoder = msgspec.json.Decoder(_Author)
typing_decoder = msgspec.json.Decoder(TypingState)


def channel(room_id: str) -> str:
    return f"room:{room_id}"


# --- client frames (SPEC section 6) ----------------------------------------------------
def joined_frame(
    room: str,
    members: list[str],
    messages: list[RoomMessage],
    streams: list[tuple[str, int]],
    max_bytes: int | None = None,
) -> tuple[bytes, int]:
    """The ``joined`` frame and how many of ``messages`` (the newest) it holds: at most
    ``max_bytes`` on the wire (JSON-escaped: a control character costs 6 bytes), the oldest
    messages left out beyond it (then ``"truncated": true``)."""
    head = _encode({"type": "joined", "room": room, "members": members})[:-1]
    tail = b',"streams":' + _encode([{"stream_id": sid, "last_seq": seq} for sid, seq in streams])
    encoded = [_encode(m.public()) for m in messages]
    budget = None if max_bytes is None else max_bytes - len(head) - len(tail) - _JOINED_EXTRA
    kept = len(encoded)
    if budget is not None:
        used, kept = 0, 0
        for item in reversed(encoded):
            used += len(item) + 1
            if used > budget:
                break
            kept += 1
    body = b",".join(encoded[len(encoded) - kept :])
    truncated = b',"truncated":true' if kept < len(encoded) else b""
    return head + b',"messages":[' + body + b"]" + tail + truncated + b"}", kept


_JOINED_EXTRA = len(b',"messages":[]') + len(b',"truncated":true}')


def message_frame(room: str, message: RoomMessage) -> bytes:
    return _encode({"type": "message", "room": room, **message.public()})


def presence_frame(room: str, user: str, state: str) -> bytes:
    return _encode({"type": "presence", "room": room, "user": user, "state": state})


def typing_frame(room: str, user: str, active: bool) -> bytes:
    return _encode({"type": "typing", "room": room, "user": user, "active": active})


def left_frame(room: str) -> bytes:
    """Answer to a client's ``leave`` (not in SPEC's list; harmless to ignore)."""
    return _encode({"type": "left", "room": room})


# --- bus payloads ------------------------------------------------------------------------
def bus_message(message_id: str, frame: bytes) -> bytes:
    return b"M" + message_id.encode() + b"\x00" + frame


def bus_event(stream_id: str, seq: int, frame: bytes) -> bytes:
    return b"E" + stream_id.encode() + b"\x00" + str(seq).encode() + b"\x00" + frame


def bus_typing(user: str, active: bool) -> bytes:
    return b"T" + _encode(TypingState(user, active))


def bus_heartbeat(node: str, users: list[str]) -> bytes:
    return b"P" + _encode(Heartbeat(node, users))


def bus_sync(node: str) -> bytes:
    return b"S" + node.encode()


def message_author(frame: bytes) -> str | None:
    """The user who wrote the ``message`` frame (None: the assistant's, or unreadable)."""
    try:
        author = _author_decoder.decode(frame)
    except msgspec.DecodeError:
        return None
    return author.user if author.role == "user" else None


def split2(data: bytes) -> tuple[str, bytes]:
    head, _, rest = data.partition(b"\x00")
    return head.decode(), rest


def split_event(data: bytes) -> tuple[str, int, bytes]:
    stream_id, _, rest = data.partition(b"\x00")
    seq, _, frame = rest.partition(b"\x00")
    return stream_id.decode(), int(seq), frame


def as_dict(frame: bytes) -> dict[str, Any]:
    """Decode a frame (tests and tools)."""
    out: dict[str, Any] = msgspec.json.decode(frame)
    return out
