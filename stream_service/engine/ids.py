"""Stream ids that tell when, and for whom, they were made.

A stream's record reaches the store just after its create answered (nothing waits for the
store before the first token), so a reader that reaches another node in the stream's first
moments waits for it (``RECORD_WAIT_S``). That wait must be spent only on an id that can be
a just-created stream of the asking user: an unknown or someone else's id answers at once,
through the same code path (ids never leak by timing, and nobody holds server time with
made-up ids).

An id is 32 lowercase hex digits (the shape :data:`core.ids.STREAM_ID` checks):
``TTTTTTTTTTTT RRRRRRRRRR GGGGGGGGGG``: 12 of its creation time (ms since the epoch),
10 random, 10 of a tag, the HMAC-SHA256 of owner, time and random part under a key every
node shares (derived from the URL-token key). Only the cluster makes valid tags, so a
made-up or foreign id never qualifies for the wait.

Non-streaming calls hold a per-user slot too, under a ticket that can never be a stream id
(:func:`new_ticket`): the per-user limit's ``replace`` knows it has nothing to cancel.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

from stream_service.store.base import now_ms

_TIME = 12
_RANDOM = 10
_TAG = 10
# A node's clock may run ahead of the creator's by this much.
_SKEW_MS = 1000
# An id made this long ago whose record is still missing expired (or never got one): no wait.
FRESH_S = 60.0
TICKET_PREFIX = "call-"  # "l" is no hex digit: never a stream id


def new_ticket() -> str:
    """A per-user slot holder for a non-streaming call."""
    return f"{TICKET_PREFIX}{secrets.token_hex(16)}"


def is_ticket(holder_id: str) -> bool:
    return holder_id.startswith(TICKET_PREFIX)


class StreamIds:
    def __init__(self, key: str | bytes, record_wait_s: float) -> None:
        raw = key.encode() if isinstance(key, str) else key
        self._key = hmac.new(raw, b"rtai stream id tag", hashlib.sha256).digest()
        self.record_wait_s = record_wait_s

    def new(self, owner: str) -> str:
        body = f"{now_ms():0{_TIME}x}{secrets.token_hex(_RANDOM // 2)}"
        return body + self._tag(owner, body)

    def _tag(self, owner: str, body: str) -> str:
        digest = hmac.new(self._key, f"{owner}\0{body}".encode(), hashlib.sha256).hexdigest()
        return digest[:_TAG]

    def made_for(self, stream_id: str, owners: Iterable[str]) -> bool:
        """Whether the cluster made ``stream_id`` for one of ``owners``."""
        if len(stream_id) != _TIME + _RANDOM + _TAG:
            return False
        body, tag = stream_id[: _TIME + _RANDOM], stream_id[_TIME + _RANDOM :]
        return any(hmac.compare_digest(self._tag(owner, body), tag) for owner in owners)

    def record_deadline(self, stream_id: str, owners: Iterable[str]) -> float:
        """Until when (``time.monotonic``) a reader may wait for the stream's record:
        ``RECORD_WAIT_S`` from now for an id the cluster made for one of ``owners`` in the
        last minute (a loaded node may write a record late), now for any other id. The same
        for a stream that exists and for one that does not."""
        now = time.monotonic()
        try:
            created = int(stream_id[:_TIME], 16)
        except ValueError:
            return now
        if not -_SKEW_MS <= now_ms() - created < FRESH_S * 1000:
            return now
        if not self.made_for(stream_id, owners):
            return now
        return now + self.record_wait_s
