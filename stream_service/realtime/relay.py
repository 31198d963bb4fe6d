"""``LLM_PROVIDER=openai``: the session relayed to OpenAI's Realtime API (or any server that
speaks it) over one upstream WebSocket.

Frames pass through unchanged: per frame the relay reads only the event's ``type`` and
``event_id`` (resume bookkeeping) and times itself. ``session.created`` / ``session.updated``
get this session's id (the one a resume names). The server's key goes upstream; the
client's credential never does. An upstream that cannot be reached, refuses the
handshake or drops becomes an ``error`` event and the end of the session (close 1011),
never a silent socket; an upstream that closes for the client's mistake (1008, 1009...)
ends it with 1008. Events of any size OpenAI accepts pass (``REALTIME_MAX_EVENT_BYTES``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from stream_service.realtime.metrics import RealtimeMetrics
from stream_service.realtime.protocol import (
    CLOSE_POLICY,
    CLOSE_UPSTREAM,
    Envelope,
    ProtocolError,
    error_event,
    read_envelope,
)
from stream_service.realtime.session import RealtimeSession
from stream_service.realtime.settings import RealtimeSettings

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Upstream closes that name the client's mistake (policy, bad data, too big): the client's
# socket closes with 1008, which SDKs do not retry. Any other drop is the server side's
# failure (1011, which they may retry).
CLIENT_MISTAKE_CODES = frozenset({1003, 1007, 1008, 1009})


def upstream_url(base_url: str | None, model: str) -> str:
    """As the SDK builds it: ws/wss, ``/realtime`` appended, ``?model=``."""
    parts = urlsplit(base_url or DEFAULT_BASE_URL)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") + "/realtime"
    query = "&".join(q for q in (parts.query, urlencode({"model": model})) if q)
    return urlunsplit((scheme, parts.netloc, path, query, ""))


class UpstreamRelay:
    def __init__(
        self,
        *,
        settings: RealtimeSettings,
        metrics: RealtimeMetrics,
        base_url: str | None,
        api_key: str | None,
        initial_session: dict[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._base_url = base_url
        self._api_key = api_key
        self._initial = initial_session
        self._ws: websockets.ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._session: RealtimeSession | None = None
        self._closing = False

    async def start(self, session: RealtimeSession) -> None:
        self._session = session
        url = upstream_url(self._base_url, session.model)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            self._ws = await websockets.connect(
                url,
                additional_headers=headers,
                open_timeout=self._settings.upstream_connect_timeout_s,
                max_size=None,
                compression=None,
                ping_interval=20,
                ping_timeout=20,
                user_agent_header="realtime-ai-stack",
            )
        except InvalidStatus as exc:
            self._metrics.upstream_failures.inc()
            status = exc.response.status_code
            raise ProtocolError(
                f"The upstream realtime service refused the connection (HTTP {status}).",
                "upstream_refused",
                type="server_error",
            ) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            self._metrics.upstream_failures.inc()
            raise ProtocolError(
                f"Could not reach the upstream realtime service: {exc or type(exc).__name__}.",
                "upstream_unavailable",
                type="server_error",
            ) from exc
        self._reader = asyncio.get_running_loop().create_task(self._read(self._ws, session))
        if self._initial:  # the configuration the client secret was minted with
            await self._ws.send(json.dumps({"type": "session.update", "session": self._initial}))

    async def _read(self, ws: websockets.ClientConnection, session: RealtimeSession) -> None:
        reason = "The upstream realtime service closed the session."
        try:
            async for message in ws:
                at = time.monotonic()
                frame = message if isinstance(message, str) else message.decode()
                envelope = read_envelope(frame)
                if envelope.type in ("session.created", "session.updated"):
                    frame = _with_session_id(frame, session.id)
                session.emit_frame(frame, envelope.event_id, at)
        except ConnectionClosed as exc:
            reason = (
                f"The upstream realtime service dropped the connection (close code "
                f"{exc.rcvd.code if exc.rcvd else 1006})."
            )
        except Exception as exc:
            reason = f"The relay's upstream failed: {exc}"
        if self._closing or not session.open:
            return
        code = ws.close_code
        if code is not None and code != 1000:
            reason = f"The upstream realtime service closed the connection (close code {code})."
        if code in CLIENT_MISTAKE_CODES:
            # the upstream refused what the client sent: its mistake, which a retry repeats
            session.emit(error_event(reason, "upstream_closed", type="invalid_request_error"))
            session.end(CLOSE_POLICY, "upstream refused the client's events")
            return
        self._metrics.upstream_failures.inc()
        session.emit(error_event(reason, "upstream_disconnected", type="server_error"))
        session.end(CLOSE_UPSTREAM, "upstream closed")

    async def handle(self, frame: str, envelope: Envelope, received_at: float) -> None:
        ws = self._ws
        assert ws is not None
        try:
            await ws.send(frame)
        except ConnectionClosed:
            return  # the reader reports the drop
        self._metrics.relay_up.observe(time.monotonic() - received_at)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _with_session_id(frame: str, session_id: str) -> str:
    try:
        event = json.loads(frame)
    except ValueError:
        return frame
    session = event.get("session") if isinstance(event, dict) else None
    if not isinstance(session, dict):
        return frame
    session["id"] = session_id
    return json.dumps(event, separators=(",", ":"))
