"""Short-lived client secrets for the voice socket (``/stream/v1/realtime``).

``POST /api/v1/realtime/client_secrets`` mints one for the signed-in user; a browser, which
cannot set headers on a WebSocket, offers it as the subprotocol
``openai-insecure-api-key.<secret>``. A secret is ``ek_`` + an HS256 JWT signed with the
URL-token key (every node of the stream service checks it without a store), bound to the
user (``sub``) and to this use (``scope`` ``realtime``), carrying the session
configuration it was minted with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from core.auth.base import Principal, principal_from_claims, unauthorized_from
from core.auth.keys import KeyRing, as_key_ring, decode_hs256
from core.errors import Unauthorized

PREFIX = "ek_"
SCOPE = "realtime"
_AUDIENCE = "rtai-realtime"


@dataclass(frozen=True, slots=True)
class ClientSecret:
    value: str
    expires_at: int


class RealtimeKeys:
    def __init__(self, secret: str | KeyRing) -> None:
        self._keys = as_key_ring(secret)

    def mint(self, sub: str, ttl_s: int, session: dict[str, Any] | None = None) -> ClientSecret:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": sub,
            "scope": SCOPE,
            "aud": _AUDIENCE,
            "iat": now,
            "exp": now + ttl_s,
        }
        if session:
            claims["session"] = session
        token = jwt.encode(claims, self._keys.signing_key(), algorithm="HS256")
        return ClientSecret(PREFIX + token, now + ttl_s)

    @staticmethod
    def looks_like(value: str) -> bool:
        return value.startswith(PREFIX)

    def verify(self, value: str) -> tuple[Principal, dict[str, Any] | None]:
        """The user the secret was minted for and the session configuration it carries."""
        if not value.startswith(PREFIX):
            raise Unauthorized("Not a realtime client secret.", code="invalid_api_key")
        try:
            claims = decode_hs256(
                self._keys,
                value[len(PREFIX) :],
                audience=_AUDIENCE,
                options={"require": ["sub", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            raise unauthorized_from(exc) from exc
        principal = principal_from_claims(claims)
        if principal.scope != SCOPE:
            raise Unauthorized("This key is not a realtime client secret.", code="invalid_api_key")
        session = claims.get("session")
        return principal, session if isinstance(session, dict) else None
