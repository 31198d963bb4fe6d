"""Presence and typing state of one room on one node (pure state, time passed in)."""

from __future__ import annotations

from stream_service.rooms.presence import RoomPresence
from stream_service.rooms.typing import RoomTyping
from tests.unit.rooms.conns import Conn


def test_one_member_per_user_however_many_connections() -> None:
    p: RoomPresence[Conn] = RoomPresence(ttl_s=3)
    a1, a2 = Conn("alice"), Conn("alice")
    assert p.add(a1) is True
    assert p.add(a2) is False
    assert p.diff().joined == ["alice"]
    assert p.discard(a1) is False
    assert not p.diff()
    assert p.discard(a2) is True
    assert p.diff().left == ["alice"]
    assert p.discard(a2) is False


def test_remote_users_lapse_without_heartbeats_and_a_heartbeat_is_the_full_list() -> None:
    p: RoomPresence[Conn] = RoomPresence(ttl_s=3)
    p.heartbeat("node-b", ["bob", "carol"], now=100.0)
    assert p.diff().joined == ["bob", "carol"]
    p.heartbeat("node-b", ["bob"], now=101.0)  # carol left node-b
    assert p.diff().left == ["carol"]
    p.expire(now=103.9)
    assert not p.diff()
    p.expire(now=104.0)  # node-b went silent: bob lapses
    assert p.diff().left == ["bob"]


def test_a_user_on_two_nodes_stays_while_either_has_them() -> None:
    p: RoomPresence[Conn] = RoomPresence(ttl_s=3)
    local = Conn("bob")
    p.add(local)
    p.heartbeat("node-b", ["bob"], now=0.0)
    assert p.diff().joined == ["bob"]
    p.discard(local)
    assert not p.diff()
    p.heartbeat("node-b", [], now=1.0)
    assert p.diff().left == ["bob"]


def test_typing_reports_changes_only_and_expires_by_itself() -> None:
    t = RoomTyping(ttl_s=6)
    assert t.set("bob", True, now=0.0) is True
    assert t.set("bob", True, now=4.0) is False  # a refresh: no news, but later expiry
    assert t.expire(now=9.9) == []
    assert t.expire(now=10.0) == ["bob"]
    assert t.active() == []
    assert t.set("bob", False, now=11.0) is False  # already stopped
    t.set("carol", True, now=12.0)
    assert t.set("carol", False, now=13.0) is True
