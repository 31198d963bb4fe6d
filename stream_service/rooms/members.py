"""What the room service needs from a connection: who it is and a non-blocking send."""

from __future__ import annotations

from typing import Protocol


class Member(Protocol):
    """One client connection in rooms (a WebSocket). Compared by identity.

    ``send`` hands one complete text frame (JSON bytes) to the connection's bounded send
    buffer and returns at once: False when that buffer is full. The service then calls its
    ``on_overflow`` hook (the WebSocket layer closes the socket with a "resume" code);
    it never waits on a slow client.
    """

    @property
    def user(self) -> str: ...

    def send(self, frame: bytes) -> bool: ...
