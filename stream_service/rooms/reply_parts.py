"""How an assistant reply becomes room messages when it is longer than one message may be.

The rule (docs/streaming.md): a reply is kept whole, as consecutive messages of at most
``ROOM_MAX_MESSAGE_BYTES`` (UTF-8) each, ``part`` 1..``parts`` of its ``stream_id``; each
cut falls after the last whitespace of the part when there is one in its second half, else
at a character boundary, so the parts joined give back the reply exactly. A reply longer
than ``ROOM_MAX_REPLY_BYTES`` keeps its beginning, up to that bound, and ends with
:data:`TRUNCATED` (then it is split the same way).
"""

from __future__ import annotations

TRUNCATED = "\n\n[reply truncated]"
_SPACE = b" \n\t\r"


def _boundary(data: bytes, end: int) -> int:
    """The largest character boundary of UTF-8 ``data`` at or before ``end``."""
    while 0 < end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
        end -= 1
    return end


def reply_parts(text: str, max_part_bytes: int, max_reply_bytes: int) -> list[str]:
    data = text.encode()
    if len(data) > max_reply_bytes:
        keep = max(0, max_reply_bytes - len(TRUNCATED.encode()))
        data = data[: _boundary(data, keep)] + TRUNCATED.encode()
    parts: list[str] = []
    start = 0
    while len(data) - start > max_part_bytes:
        end = _boundary(data, start + max_part_bytes)
        space = max(data.rfind(bytes([c]), start, end) for c in _SPACE)
        if space >= start + max_part_bytes // 2:
            end = space + 1  # the whitespace stays with the part before the cut
        parts.append(data[start:end].decode())
        start = end
    parts.append(data[start:].decode())
    return parts
