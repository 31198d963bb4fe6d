"""Typing states of one room as seen from one node: pure state, time passed in.

``active: true`` starts or refreshes a state that expires ``ttl_s`` later by itself (a
lost "stopped typing" never leaves anyone typing). Only changes are reported, so members
are told when someone starts and when they stop (by message, by leaving or by expiry),
not on every refresh.
"""

from __future__ import annotations


class RoomTyping:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._until: dict[str, float] = {}

    def set(self, user: str, active: bool, now: float) -> bool:
        """Apply a typing state; True if the user's state changed."""
        if active:
            was = user in self._until
            self._until[user] = now + self.ttl_s
            return not was
        return self._until.pop(user, None) is not None

    def clear(self, user: str) -> bool:
        return self._until.pop(user, None) is not None

    def expire(self, now: float) -> list[str]:
        """Users whose state lapsed (now no longer typing)."""
        gone = [user for user, until in self._until.items() if until <= now]
        for user in gone:
            del self._until[user]
        return sorted(gone)

    def active(self) -> list[str]:
        return sorted(self._until)
