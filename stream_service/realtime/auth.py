"""Who opens a voice socket: ``Authorization: Bearer <JWT or client secret>``, or, from a
browser, the subprotocols ``realtime`` + ``openai-insecure-api-key.<client secret>``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.auth import Principal, TokenVerifier
from core.auth.realtime_keys import RealtimeKeys
from core.errors import Unauthorized
from core.http.auth import verify_bearer

SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    session: dict[str, Any] | None  # the configuration a client secret was minted with


def offered_subprotocols(header: str | None) -> list[str]:
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def answer_subprotocol(offered: list[str]) -> str | None:
    """``realtime`` when offered (a browser fails the handshake if none is answered)."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


async def authenticate(
    authorization: str | None,
    offered: list[str],
    verifier: TokenVerifier,
    keys: RealtimeKeys,
) -> Caller:
    """The caller, or :class:`Unauthorized` with OpenAI's code."""
    secret = next(
        (p[len(KEY_SUBPROTOCOL) :] for p in offered if p.startswith(KEY_SUBPROTOCOL)), None
    )
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'.")
        token = token.strip()
        if keys.looks_like(token):
            principal, session = keys.verify(token)
            return Caller(principal, session)
        principal = await verify_bearer(verifier, token)
        if principal.scope is not None:
            raise Unauthorized("A URL token does not open a voice session.")
        return Caller(principal, None)
    if secret is not None:
        if not keys.looks_like(secret):
            raise Unauthorized(
                "The subprotocol key must be a client secret from "
                "POST /api/v1/realtime/client_secrets (never a long-lived token).",
            )
        principal, session = keys.verify(secret)
        return Caller(principal, session)
    raise Unauthorized(
        "You didn't provide an API key. Send 'Authorization: Bearer <token>', or from a "
        "browser the subprotocol 'openai-insecure-api-key.<client secret>'.",
        code="missing_api_key",
    )
