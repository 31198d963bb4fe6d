"""``POST /api/v1/realtime/client_secrets``: a short-lived key for the voice socket.

OpenAI's request and response shape: ``{"expires_after": {"anchor": "created_at",
"seconds"}, "session": {...}}`` -> ``{"value", "expires_at", "session"}``. The key opens
``/stream/v1/realtime`` as the signed-in user (a browser offers it as the subprotocol
``openai-insecure-api-key.<value>``); the session configuration travels inside it and is
applied when the socket opens. The configuration is checked as ``session.update`` checks
it (a 400 in OpenAI's shape naming the ``param``), and the answer's ``session`` is the
whole session object with its defaults and the ``id`` the socket's session will have. The
OpenAI key never leaves the server.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, post

from core import json_input
from core.auth.realtime_keys import RealtimeKeys
from core.errors import InvalidRequest
from core.http.auth import AuthPrincipal
from core.schemas.realtime import RealtimeParamError, check_session, default_session, merge_into
from core.settings import Settings

DEFAULT_TTL_S = 600
MIN_TTL_S = 10
MAX_TTL_S = 7200
# The session configuration rides inside the key, which a browser sends in a header.
MAX_SESSION_BYTES = 4096
DEFAULT_MODEL = "gpt-realtime"
SESSION_S = 3600  # a session's longest life (REALTIME_MAX_SESSION_S's default, OpenAI's)


class ExpiresAfter(msgspec.Struct):
    anchor: Literal["created_at"] = "created_at"
    seconds: int = DEFAULT_TTL_S


class ClientSecretRequest(msgspec.Struct):
    expires_after: ExpiresAfter | None = None
    session: dict[str, Any] | None = None


class RealtimeController(Controller):
    path = "/api/v1/realtime"

    @post("/client_secrets", status_code=200)
    async def create_client_secret(
        self, request: Request[Any, Any, Any], principal: AuthPrincipal
    ) -> dict[str, Any]:
        body = await request.body()
        try:
            data = json_input.decode(body or b"{}", type=ClientSecretRequest)
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"Invalid request body: {exc}") from exc
        ttl = data.expires_after.seconds if data.expires_after else DEFAULT_TTL_S
        if not MIN_TTL_S <= ttl <= MAX_TTL_S:
            raise InvalidRequest(
                f"expires_after.seconds must be between {MIN_TTL_S} and {MAX_TTL_S}.",
                code="invalid_value",
                param="expires_after.seconds",
            )
        session = dict(data.session or {})
        kind = session.setdefault("type", "realtime")
        if kind != "realtime":
            raise InvalidRequest(
                "Only 'realtime' sessions are served (session.type).",
                code="invalid_value",
                param="session.type",
            )
        try:  # as session.update checks it: a bad configuration fails here, not at connect
            check_session(session)
        except RealtimeParamError as exc:
            raise InvalidRequest(exc.message, code=exc.code, param=exc.param) from exc
        session_id = f"sess_{secrets.token_hex(12)}"
        if len(msgspec.json.encode(session)) > MAX_SESSION_BYTES:
            raise InvalidRequest(
                f"session must encode to at most {MAX_SESSION_BYTES} bytes: it travels inside "
                "the key. Send larger settings with session.update once connected.",
                code="invalid_value",
                param="session",
            )
        settings: Settings = request.app.state.settings
        # the session's id travels in the key: the socket it opens gets that id
        secret = RealtimeKeys(settings.url_token_keys()).mint(
            principal.sub, ttl, {**session, "id": session_id}
        )
        model = str(session.get("model") or DEFAULT_MODEL)
        full = merge_into(default_session(session_id, model, SESSION_S), session)
        return {"value": secret.value, "expires_at": secret.expires_at, "session": full}
