"""Presence of one room as seen from one node: pure state, time passed in.

A user is present while any connection of theirs is on this node, or while another node's
heartbeat listed them within ``ttl_s``. A heartbeat carries a node's full list of users in
the room, so a user missing from it is gone from that node at once, and a node that stops
sending (killed) loses its users when their entries lapse.

Local members are told about changes as diffs (``joined`` / ``left``) against what they
were last told (``announced``), never as full lists after the first snapshot.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from stream_service.rooms.members import Member

M = TypeVar("M", bound=Member)


@dataclass(slots=True)
class PresenceDiff:
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.joined or self.left)


class RoomPresence(Generic[M]):
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.conns: dict[str, set[M]] = defaultdict(set)  # user -> this node's connections
        self.remote: dict[str, dict[str, float]] = {}  # node -> {user: expires at}
        self.announced: set[str] = set()

    # --- this node's connections -------------------------------------------------------
    def add(self, member: M) -> bool:
        """Add a connection; True if its user was not on this node before."""
        conns = self.conns[member.user]
        first = not conns
        conns.add(member)
        return first

    def discard(self, member: M) -> bool:
        """Remove a connection; True if that was its user's last one on this node."""
        conns = self.conns.get(member.user)
        if not conns or member not in conns:
            return False
        conns.discard(member)
        if conns:
            return False
        del self.conns[member.user]
        return True

    def has(self, member: M) -> bool:
        return member in self.conns.get(member.user, ())

    def local_users(self) -> list[str]:
        return sorted(self.conns)

    def connections(self) -> list[M]:
        return [m for conns in self.conns.values() for m in conns]

    @property
    def empty(self) -> bool:
        return not self.conns

    # --- other nodes -------------------------------------------------------------------
    def heartbeat(self, node: str, users: list[str], now: float) -> None:
        """``node`` says these are all of its users in the room."""
        until = now + self.ttl_s
        if users:
            self.remote[node] = dict.fromkeys(users, until)
        else:
            self.remote.pop(node, None)

    def expire(self, now: float) -> None:
        for node in list(self.remote):
            entries = self.remote[node]
            for user in [u for u, until in entries.items() if until <= now]:
                del entries[user]
            if not entries:
                del self.remote[node]

    # --- what local members see ----------------------------------------------------------
    def present(self) -> set[str]:
        users = set(self.conns)
        for entries in self.remote.values():
            users.update(entries)
        return users

    def is_present(self, user: str) -> bool:
        return user in self.conns or any(user in e for e in self.remote.values())

    def diff(self) -> PresenceDiff:
        """Changes since the last call (or the last :meth:`snapshot`)."""
        now = self.present()
        out = PresenceDiff(sorted(now - self.announced), sorted(self.announced - now))
        self.announced = now
        return out

    def snapshot(self) -> list[str]:
        """The member list for a `joined` (pending changes are announced first: call
        :meth:`diff` before this)."""
        return sorted(self.announced)
