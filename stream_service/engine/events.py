"""Stream events, and the seam between the engine and its transports.

The engine produces :class:`Event` s (seq, kind, JSON payload) and knows no wire format. A
transport supplies a :class:`Format` that renders an event into its frame; the frame is
cached on the event (one slot per format), so an event is rendered once per format however
many readers it has. A :class:`Sink` is where the producer may write a rendered frame
straight to a caught-up reader's connection (direct delivery, see :mod:`.live`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from stream_service.engine.types import TERMINAL_KINDS, EventKind
from stream_service.store.base import StoredEvent

_json = msgspec.json.Encoder()


class _Delta(msgspec.Struct, gc=False):
    text: str


# A ``delta`` payload is ``{"text": ...}`` (the per-token path, encoded from a struct), or,
# when the upstream sent more than text, the other fields of its delta first, then
# ``"logprobs"``, then ``"text"``: so a text-only payload is told apart by its first bytes.
TEXT_ONLY_PREFIX = b'{"text":'
# One delta event's payload at most (a longer one is split across events, as text is),
# so that a store batch of events stays far within a DynamoDB item's 400 KB.
MAX_DELTA_BYTES = 32_768
# Text up to this many characters cannot exceed MAX_DELTA_BYTES once encoded (12 bytes per
# character at worst: a JSON-escaped surrogate pair), so it needs no measuring.
SAFE_TEXT_CHARS = (MAX_DELTA_BYTES - 16) // 12


class Event(msgspec.Struct, gc=False):
    """One event of a stream, with its wire frames rendered at most once per format.

    Live streams keep thousands of these in memory; ``gc=False`` keeps them out of the
    garbage collector's sight (they hold only ints, strings and bytes).
    """

    seq: int
    kind: str
    data: bytes  # the JSON payload
    f0: bytes | None = None  # frame caches, one per format slot (see Format.slot)
    f1: bytes | None = None
    f2: bytes | None = None
    f3: bytes | None = None

    @classmethod
    def make(cls, seq: int, kind: EventKind | str, payload: Any) -> Event:
        return cls(seq, str(kind), _json.encode(payload))

    @classmethod
    def delta(cls, seq: int, text: str) -> Event:
        return cls(seq, "delta", _json.encode(_Delta(text)))

    @classmethod
    def rich_delta(cls, seq: int, text: str, fields: dict[str, Any], logprobs: Any) -> Event:
        """A delta with more than text: the upstream delta's other fields as it sent them."""
        payload = {k: v for k, v in fields.items() if k != "text"}  # text is ``text``
        if logprobs is not None:
            payload["logprobs"] = logprobs
        payload["text"] = text
        return cls(seq, "delta", _json.encode(payload))

    @classmethod
    def from_stored(cls, stored: StoredEvent) -> Event:
        return cls(*stored)

    def stored(self) -> StoredEvent:
        return (self.seq, self.kind, self.data)

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


DELTA_TEXT = msgspec.json.Decoder(_Delta)
_payload = msgspec.json.Decoder(dict[str, Any])


def delta_parts(data: bytes) -> tuple[str, dict[str, Any] | None, Any]:
    """(text, the other fields or None, logprobs) of a ``delta`` payload."""
    if data.startswith(TEXT_ONLY_PREFIX):
        return DELTA_TEXT.decode(data).text, None, None
    payload = _payload.decode(data)
    text = payload.pop("text", "")
    logprobs = payload.pop("logprobs", None)
    return text, payload, logprobs


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a stream is, beyond its events: formats that follow OpenAI's chunks need it."""

    completion_id: str
    model: str
    created_s: int
    include_usage: bool


class Format(abc.ABC):
    """A wire format of events. ``slot`` (0 to 3) picks the frame cache on events:
    formats that render the same event differently use different slots."""

    slot: int = 0

    @abc.abstractmethod
    def render(self, event: Event) -> bytes: ...

    def frame(self, event: Event) -> bytes:
        """``event`` rendered, once per format."""
        slot = self.slot
        if slot == 0:
            if event.f0 is None:
                event.f0 = self.render(event)
            return event.f0
        if slot == 1:
            if event.f1 is None:
                event.f1 = self.render(event)
            return event.f1
        if slot == 2:
            if event.f2 is None:
                event.f2 = self.render(event)
            return event.f2
        if event.f3 is None:
            event.f3 = self.render(event)
        return event.f3

    def frames(self, events: list[Event]) -> bytes:
        if len(events) == 1:
            return self.frame(events[0])
        return b"".join([self.frame(e) for e in events])


class Sink(Protocol):
    """A reader's connection, written to from the producer's task (direct delivery).

    ``write`` starts sending a frame and says whether it was taken (False: nothing was
    sent, the reader's own task takes over). A frame that could not be written at once is
    left ``pending`` (not None); the reader's task finishes it (``settle``) before it sends
    anything else. (An attribute, not a property: it is read once per token and reader.)
    """

    @property
    def pending(self) -> object | None: ...

    def write(self, frame: bytes) -> bool: ...

    async def settle(self) -> None: ...
