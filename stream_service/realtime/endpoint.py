"""The ``/stream/v1/realtime`` socket: auth, new session or resume, and the two pumps
(client -> backend, session log -> client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import msgspec
from litestar import WebSocket

from core.auth import TokenVerifier
from core.auth.realtime_keys import RealtimeKeys
from core.errors import ApiError
from stream_service.realtime.auth import (
    Caller,
    answer_subprotocol,
    authenticate,
    offered_subprotocols,
)
from stream_service.realtime.event_log import Gap
from stream_service.realtime.limits import ClientLimits
from stream_service.realtime.metrics import RealtimeMetrics
from stream_service.realtime.protocol import (
    CLOSE_POLICY,
    CLOSE_RESTART,
    CLOSE_SLOW,
    CLOSE_UPSTREAM,
    ProtocolError,
    error_event,
    new_id,
    read_envelope,
)
from stream_service.realtime.session import (
    Attachment,
    Backend,
    RealtimeSession,
    SessionRegistry,
)
from stream_service.realtime.settings import RealtimeSettings

log = logging.getLogger("rtai.realtime")

BackendFactory = Callable[[Caller, ClientLimits], Backend]


class RealtimeEndpoint:
    def __init__(
        self,
        *,
        settings: RealtimeSettings,
        registry: SessionRegistry,
        metrics: RealtimeMetrics,
        verifier: TokenVerifier,
        keys: RealtimeKeys,
        provider_name: str,
        make_backend: BackendFactory,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._verifier = verifier
        self._keys = keys
        self._provider = provider_name
        self._make_backend = make_backend

    async def serve(self, socket: WebSocket[Any, Any, Any]) -> None:
        offered = offered_subprotocols(socket.headers.get("sec-websocket-protocol"))
        await socket.accept(subprotocols=answer_subprotocol(offered))
        try:
            caller = await authenticate(
                socket.headers.get("authorization"), offered, self._verifier, self._keys
            )
        except ApiError as exc:
            await _refuse(socket, ProtocolError(exc.message, exc.code or "invalid_api_key"))
            return
        query = socket.query_params
        session_id = query.get("session_id")
        limits = ClientLimits(self._settings)
        if session_id:
            resumed = await self._resume(socket, caller, session_id, query.get("after_event_id"))
            if resumed is None:
                return
            session, seq = resumed
        else:
            model = query.get("model")
            if not model:
                await _refuse(
                    socket,
                    ProtocolError(
                        "Missing required parameter: 'model'.",
                        "missing_required_parameter",
                        param="model",
                    ),
                )
                return
            minted = dict(caller.session or {})
            minted_id = minted.pop("id", None)  # the id client_secrets answered with
            caller = replace(caller, session=minted or None)
            try:
                session = self._registry.create(
                    caller.principal.sub,
                    model,
                    self._provider,
                    minted_id if isinstance(minted_id, str) else None,
                )
            except ProtocolError as exc:
                code = CLOSE_RESTART if exc.code == "server_restarting" else CLOSE_POLICY
                await _refuse(socket, exc, code)
                return
            session.backend = self._make_backend(caller, limits)
            try:
                await session.backend.start(session)
            except ProtocolError as exc:
                session.emit_error(exc)
                # the client's mistake (a bad configuration in its secret) is 1008, which
                # SDKs do not retry; 1011 only for the server's own failures
                code = CLOSE_POLICY if exc.type == "invalid_request_error" else CLOSE_UPSTREAM
                session.end(code, "the backend did not start")
            except Exception:
                log.exception("realtime session %s: the backend failed to start", session.id)
                session.emit(
                    error_event(
                        "The voice session could not start.", "server_error", type="server_error"
                    )
                )
                session.end(CLOSE_UPSTREAM, "the backend failed to start")
            else:
                session.start_expiry()
            seq = 0
        await self._run(socket, session, limits, seq)

    async def _resume(
        self,
        socket: WebSocket[Any, Any, Any],
        caller: Caller,
        session_id: str,
        after_event_id: str | None,
    ) -> tuple[RealtimeSession, int] | None:
        session = self._registry.get(session_id, caller.principal.sub)
        if session is None:
            self._metrics.resume_not_found.inc()
            await _refuse(
                socket,
                ProtocolError(
                    f"Session '{session_id}' was not found on this node: it ended (no client "
                    "within REALTIME_RESUME_GRACE_S) or lives elsewhere.",
                    "session_not_found",
                    param="session_id",
                ),
            )
            return None
        seq = 0
        if after_event_id:
            found = session.log.seq_after(after_event_id)
            if found is None:
                await _refuse(
                    socket,
                    ProtocolError(
                        f"Event '{after_event_id}' is no longer held for this session; it cannot"
                        " be resumed without a gap.",
                        "invalid_value",
                        param="after_event_id",
                    ),
                )
                return None
            seq = found
        self._metrics.resume_ok.inc()
        return session, seq

    async def _run(
        self,
        socket: WebSocket[Any, Any, Any],
        session: RealtimeSession,
        limits: ClientLimits,
        seq: int,
    ) -> None:
        client = session.attach()
        writer = asyncio.create_task(self._write(socket, session, client, seq))
        reader = asyncio.create_task(self._read(socket, session, limits))
        client_ended = False
        try:
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            if reader in done and not reader.cancelled() and reader.exception() is None:
                client_ended = reader.result()
        finally:
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(BaseException):
                    await task
            session.detach(client, client_ended=client_ended)

    async def _read(
        self, socket: WebSocket[Any, Any, Any], session: RealtimeSession, limits: ClientLimits
    ) -> bool:
        """Client events to the backend until the client leaves; True for a normal close."""
        relay = self._provider == "openai"
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return bool(message.get("code", 1005) == 1000)
            at = time.monotonic()
            text = message.get("text")
            if isinstance(text, str):
                frame = text
            else:
                data = message.get("bytes")
                frame = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            envelope = read_envelope(frame)
            if not session.open:
                continue
            try:
                limits.check_frame(frame, envelope.event_id, envelope.type)
                if relay and envelope.type == "input_audio_buffer.append":
                    limits.check_append(len(frame) * 3 // 4 - 96, envelope.event_id)
                backend = session.backend
                if backend is not None:
                    await backend.handle(frame, envelope, at)
            except ProtocolError as exc:
                if exc.event_id is None:
                    exc.event_id = envelope.event_id
                if exc.code in ("rate_limit_exceeded", "event_too_large", "audio_too_large"):
                    self._metrics.limit_rejections.labels(exc.code).inc()
                session.emit_error(exc)
            except Exception:
                log.exception("realtime session %s: event failed", session.id)
                session.emit(
                    error_event(
                        "The server failed to handle this event.",
                        "server_error",
                        event_id=envelope.event_id,
                        type="server_error",
                    )
                )

    async def _write(
        self,
        socket: WebSocket[Any, Any, Any],
        session: RealtimeSession,
        client: Attachment,
        seq: int,
    ) -> None:
        """The session's events from ``seq`` on, then live ones, until the socket is done."""
        observe = self._metrics.relay_down.observe if self._provider == "openai" else None
        attached_at = time.monotonic()
        log_ = session.log
        while True:
            try:
                frames = log_.read(seq)
            except Gap:
                await _close(socket, CLOSE_SLOW, "client too slow: resume to catch up")
                return
            for frame, at in frames:
                await socket.send_text(frame)
                if observe is not None and at >= attached_at:
                    observe(time.monotonic() - at)
            seq += len(frames)
            if client.replaced:
                await _close(socket, CLOSE_POLICY, "replaced by a resumed connection")
                return
            if client.detached:
                return
            if not session.open and seq >= log_.next_seq:
                await _close(socket, session.end_code, "session ended")
                return
            if not frames:
                await log_.wait_beyond(seq)


async def _refuse(
    socket: WebSocket[Any, Any, Any], error: ProtocolError, code: int = CLOSE_POLICY
) -> None:
    event = error.event()
    event["event_id"] = new_id("event")
    with contextlib.suppress(Exception):
        await socket.send_text(msgspec.json.encode(event).decode())
    await _close(socket, code, error.code)


async def _close(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await socket.close(code=code, reason=reason[:120])
