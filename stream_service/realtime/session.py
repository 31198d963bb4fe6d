"""A voice session: its event log, the client attached to it, its grace and its end.

A session outlives its socket. When the client's socket drops (any close but a normal
1000), the session waits ``REALTIME_RESUME_GRACE_S`` for a resume; the backend (the
upstream socket, or the local stand-in's reply in progress) keeps running meanwhile and
its events go on into the log. With no resume in time, the session ends and the backend
is closed: nothing is paid for a listener who is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from stream_service.realtime.event_log import EventLog
from stream_service.realtime.metrics import RealtimeMetrics
from stream_service.realtime.protocol import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_RESTART,
    Envelope,
    ProtocolError,
    error_event,
)
from stream_service.realtime.settings import RealtimeSettings

log = logging.getLogger("rtai.realtime")
_SESSION_ID = re.compile(r"^sess_[0-9a-f]{24}$")
_encode = msgspec.json.Encoder().encode


class Backend(Protocol):
    """What answers a session's client events: the relay or the local stand-in."""

    async def start(self, session: RealtimeSession) -> None:
        """Begin (the relay connects upstream); raise :class:`ProtocolError` to refuse."""

    async def handle(self, frame: str, envelope: Envelope, received_at: float) -> None:
        """One client event (already within the limits)."""

    async def close(self) -> None:
        """Release everything (idempotent)."""


class SessionState(enum.Enum):
    OPEN = "open"
    ENDED = "ended"


class Attachment:
    """One client socket reading the session's log."""

    __slots__ = ("detached", "replaced")

    def __init__(self) -> None:
        self.detached = False
        self.replaced = False


class RealtimeSession:
    def __init__(
        self,
        session_id: str,
        owner: str,
        model: str,
        provider: str,
        settings: RealtimeSettings,
        metrics: RealtimeMetrics,
        on_end: Callable[[RealtimeSession], None],
    ) -> None:
        self.id = session_id
        self.owner = owner
        self.model = model
        self.provider = provider
        self.settings = settings
        self.metrics = metrics
        self.log = EventLog(settings.resume_buffer_bytes, settings.resume_buffer_s)
        self.state = SessionState.OPEN
        self.end_code = CLOSE_NORMAL
        self.backend: Backend | None = None
        self._on_end = on_end
        self._ids = itertools.count(1)
        self._id_tag = secrets.token_hex(3)
        self._client: Attachment | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    # --- events -------------------------------------------------------------------------

    def next_event_id(self) -> str:
        return f"event_{self._id_tag}{next(self._ids):07d}"

    def emit(self, event: dict[str, Any]) -> str:
        """Append a server event (its ``event_id`` set here) for the client; returns the id."""
        event_id = self.next_event_id()
        event["event_id"] = event_id
        self.log.append(_encode(event).decode(), event_id, time.monotonic())
        if event["type"] == "error":
            self.metrics.errors.labels(event["error"]["code"] or "none").inc()
        return event_id

    def emit_error(self, error: ProtocolError) -> None:
        self.emit(error.event())

    def emit_frame(self, frame: str, event_id: str | None, at: float) -> None:
        """Append a frame as it came (the relay's upstream events)."""
        self.log.append(frame, event_id, at)

    # --- clients ------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.state is SessionState.OPEN

    def attach(self) -> Attachment:
        """A new client reader; a client still attached is told to go (a resume replaced it)."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._client is not None:
            self._client.detached = self._client.replaced = True
            self.log.poke()
        self._client = Attachment()
        return self._client

    def detach(self, client: Attachment, *, client_ended: bool) -> None:
        """The client's socket is gone: end now (a normal close) or wait for a resume."""
        client.detached = True
        if self._client is not client:
            return
        self._client = None
        if not self.open:
            return
        if client_ended:
            self.end(CLOSE_NORMAL, "the client closed the session")
            return
        grace = self.settings.resume_grace_s
        self._grace = asyncio.get_running_loop().call_later(
            grace, self.end, CLOSE_NORMAL, "no client resumed within REALTIME_RESUME_GRACE_S"
        )

    def start_expiry(self) -> None:
        self._expiry = asyncio.get_running_loop().call_later(
            self.settings.max_session_s, self._expired
        )

    def _expired(self) -> None:
        self.emit(
            error_event(
                f"The session reached its maximum length of {self.settings.max_session_s:g} s "
                "(REALTIME_MAX_SESSION_S).",
                "session_expired",
            )
        )
        self.end(CLOSE_POLICY, "session expired")

    # --- end ----------------------------------------------------------------------------

    def end(self, code: int, reason: str) -> None:
        """End the session: the client reads what is left, then its socket closes with
        ``code``; the backend is closed."""
        if not self.open:
            return
        log.info("realtime session %s ended: %s", self.id, reason)
        self.state = SessionState.ENDED
        self.end_code = code
        for timer in (self._grace, self._expiry):
            if timer is not None:
                timer.cancel()
        self.log.poke()
        self._on_end(self)
        self._closing = asyncio.get_running_loop().create_task(self._close_backend())

    async def _close_backend(self) -> None:
        if self.backend is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.backend.close())


class SessionRegistry:
    """The sessions of this node, by id, with the per-user limit."""

    def __init__(self, settings: RealtimeSettings, metrics: RealtimeMetrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._sessions: dict[str, RealtimeSession] = {}
        self._by_user: dict[str, set[str]] = {}
        self.draining = False

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str, owner: str) -> RealtimeSession | None:
        """The open session ``session_id`` of ``owner`` (another user's is not found)."""
        session = self._sessions.get(session_id)
        if session is None or session.owner != owner or not session.open:
            return None
        return session

    def create(
        self, owner: str, model: str, provider: str, session_id: str | None = None
    ) -> RealtimeSession:
        """A new session; ``session_id`` (the one a client secret was minted with) when it
        has the shape of one and is not in use."""
        if self.draining:
            raise ProtocolError(
                "This node is restarting; connect again for a new session.",
                "server_restarting",
                type="server_error",
            )
        held = self._by_user.get(owner, set())
        limit = self._settings.max_sessions_per_user
        if len(held) >= limit:
            self._metrics.limit_rejections.labels("sessions_per_user").inc()
            raise ProtocolError(
                f"You already have {len(held)} voice sessions open (sessions waiting for a "
                f"resume count); the limit is {limit} (REALTIME_MAX_SESSIONS_PER_USER).",
                "session_limit_reached",
                type="rate_limit_error",
            )
        if session_id is None or not _SESSION_ID.match(session_id) or session_id in self._sessions:
            session_id = f"sess_{secrets.token_hex(12)}"
        session = RealtimeSession(
            session_id,
            owner,
            model,
            provider,
            self._settings,
            self._metrics,
            self._remove,
        )
        self._sessions[session.id] = session
        self._by_user.setdefault(owner, set()).add(session.id)
        self._metrics.sessions.inc()
        self._metrics.sessions_started.labels(provider).inc()
        return session

    def _remove(self, session: RealtimeSession) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._metrics.sessions.dec()
        held = self._by_user.get(session.owner)
        if held is not None:
            held.discard(session.id)
            if not held:
                del self._by_user[session.owner]

    async def drain(self) -> None:
        """SIGTERM: no new sessions here; each open one gets an ``error``
        (``server_restarting``) and closes with 1012. A session lives in this node's memory
        and cannot move: its client starts a new one on another node."""
        self.draining = True
        for session in list(self._sessions.values()):
            session.emit(
                error_event(
                    "This node is restarting; the session ends here. Start a new session "
                    "(the conversation cannot move to another node).",
                    "server_restarting",
                    type="server_error",
                )
            )
            session.end(CLOSE_RESTART, "the node is draining")

    async def close_all(self) -> None:
        sessions = list(self._sessions.values())
        for session in sessions:
            session.end(CLOSE_NORMAL, "the node is stopping")
        for session in sessions:
            if session._closing is not None:
                with contextlib.suppress(Exception):
                    await session._closing
