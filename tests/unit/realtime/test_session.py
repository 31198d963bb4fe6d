"""A session's life without sockets: grace, resume, normal close, expiry, per-user limit."""

from __future__ import annotations

import asyncio
import json

import pytest

from stream_service.realtime.metrics import RealtimeMetrics
from stream_service.realtime.protocol import ProtocolError
from stream_service.realtime.session import RealtimeSession, SessionRegistry
from stream_service.realtime.settings import RealtimeSettings


class Recorder:
    """A backend that records being closed."""

    def __init__(self) -> None:
        self.closed = 0

    async def start(self, session: RealtimeSession) -> None:
        return None

    async def handle(self, frame: str, envelope: object, received_at: float) -> None:
        return None

    async def close(self) -> None:
        self.closed += 1


def registry(**settings: float) -> SessionRegistry:
    return SessionRegistry(RealtimeSettings(**settings), RealtimeMetrics())  # type: ignore[arg-type]


async def test_a_dropped_client_has_the_grace_to_come_back() -> None:
    sessions = registry(resume_grace_s=0.2)
    session = sessions.create("alice", "m", "local")
    session.backend = backend = Recorder()
    client = session.attach()
    session.detach(client, client_ended=False)
    await asyncio.sleep(0.1)
    assert sessions.get(session.id, "alice") is session
    session.attach()  # resumed in time: the grace is off
    await asyncio.sleep(0.3)
    assert session.open and backend.closed == 0


async def test_after_the_grace_the_session_and_its_backend_end() -> None:
    sessions = registry(resume_grace_s=0.1)
    session = sessions.create("alice", "m", "openai")
    session.backend = backend = Recorder()
    session.detach(session.attach(), client_ended=False)
    await asyncio.sleep(0.3)
    assert not session.open and backend.closed == 1
    assert sessions.get(session.id, "alice") is None
    assert len(sessions) == 0


async def test_a_normal_close_ends_at_once_and_another_user_never_sees_it() -> None:
    sessions = registry(resume_grace_s=10)
    session = sessions.create("alice", "m", "local")
    session.backend = Recorder()
    assert sessions.get(session.id, "bob") is None
    session.detach(session.attach(), client_ended=True)
    assert not session.open
    assert sessions.get(session.id, "alice") is None


async def test_a_session_ends_at_its_maximum_length_with_an_error() -> None:
    sessions = registry(max_session_s=0.1)
    session = sessions.create("alice", "m", "local")
    session.backend = Recorder()
    session.start_expiry()
    await asyncio.sleep(0.25)
    assert not session.open
    last = json.loads(session.log.read(session.log.next_seq - 1)[0][0])
    assert last["error"]["code"] == "session_expired"


async def test_a_resume_replaces_a_client_still_attached() -> None:
    session = registry().create("alice", "m", "local")
    old = session.attach()
    new = session.attach()
    assert old.replaced and old.detached and not new.detached


async def test_the_per_user_limit_counts_open_sessions() -> None:
    sessions = registry(max_sessions_per_user=2)
    first = sessions.create("alice", "m", "local")
    first.backend = Recorder()
    sessions.create("alice", "m", "local")
    sessions.create("bob", "m", "local")
    with pytest.raises(ProtocolError) as caught:
        sessions.create("alice", "m", "local")
    assert caught.value.code == "session_limit_reached"
    first.end(1000, "done")
    sessions.create("alice", "m", "local")


async def test_every_server_event_id_is_unique() -> None:
    session = registry().create("alice", "m", "local")
    ids = {session.emit({"type": "x"}) for _ in range(1000)}
    assert len(ids) == 1000


async def test_a_draining_node_ends_its_sessions_and_takes_no_new_ones() -> None:
    sessions = registry()
    session = sessions.create("alice", "m", "local")
    session.backend = backend = Recorder()
    await sessions.drain()
    assert not session.open and session.end_code == 1012
    last = json.loads(session.log.read(session.log.next_seq - 1)[0][0])
    assert last["error"]["code"] == "server_restarting"
    with pytest.raises(ProtocolError) as caught:
        sessions.create("alice", "m", "local")
    assert caught.value.code == "server_restarting"
    await asyncio.sleep(0.05)
    assert backend.closed == 1
