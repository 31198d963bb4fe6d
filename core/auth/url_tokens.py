"""Short-lived tokens carried in URLs, each scoped to one resource.

Browsers cannot set headers on EventSource or WebSocket, so the API hands out URLs with
``?token=...``: an HS256 JWT signed with the server's URL-token key whose ``scope`` names
the one stream or connection (``ws``) it opens.

A stream's URL token is **read-only** (``stream:<id>:read``): it reads the stream's events
and nothing else. Cancelling needs the bearer token. URLs end up in browser history, proxy
and load-balancer logs; what leaks from there can watch a stream for a few minutes
(``URL_TOKEN_TTL_S``, 15 by default), never stop it. A client whose token expired gets a
fresh ``events_url`` from ``GET /stream/v1/streams/{id}`` (bearer). The token never goes
into the service's own logs (:func:`redact_url_token` for any line that carries a URL).
"""

from __future__ import annotations

import re
import time

import jwt

from core.auth.base import Principal, principal_from_claims, unauthorized_from
from core.auth.keys import KeyRing, as_key_ring, decode_hs256
from core.errors import Unauthorized

_AUDIENCE = "rtai-url"
_TOKEN_PARAM = re.compile(r"([?&]token=)[^&#\s]*")


def stream_read_scope(stream_id: str) -> str:
    """The scope of a URL token that reads one stream's events (and cannot cancel it)."""
    return f"stream:{stream_id}:read"


def redact_url_token(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced (for logs)."""
    return _TOKEN_PARAM.sub(r"\1[redacted]", text)


class UrlTokens:
    """``secret``: the key, or a :class:`~core.auth.keys.KeyRing` that rotates (signs with
    the current key, verifies with the current and the previous one)."""

    def __init__(self, secret: str | KeyRing, ttl_s: int) -> None:
        self._keys = as_key_ring(secret)
        self.ttl_s = ttl_s

    def mint(self, sub: str, scope: str) -> str:
        now = int(time.time())
        claims = {"sub": sub, "scope": scope, "aud": _AUDIENCE, "iat": now, "exp": now + self.ttl_s}
        return jwt.encode(claims, self._keys.signing_key(), algorithm="HS256")

    def verify(self, token: str, scope: str | tuple[str, ...]) -> Principal:
        """The token's user if it is valid and its scope is ``scope`` (or one of them)."""
        try:
            claims = decode_hs256(
                self._keys,
                token,
                audience=_AUDIENCE,
                options={"require": ["sub", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            raise unauthorized_from(exc) from exc
        principal = principal_from_claims(claims)
        allowed = (scope,) if isinstance(scope, str) else scope
        if principal.scope not in allowed:
            raise Unauthorized("This URL token is for another resource.", code="invalid_token")
        return principal

    # --- streams: read-only URL tokens ---------------------------------------------
    def mint_stream_read(self, sub: str, stream_id: str) -> str:
        return self.mint(sub, stream_read_scope(stream_id))

    def stream_events_url(self, sub: str, stream_id: str) -> str:
        """The ``events_url`` of a stream: its SSE path with a fresh read-only token."""
        token = self.mint_stream_read(sub, stream_id)
        return f"/stream/v1/streams/{stream_id}/events?token={token}"

    def verify_stream_read(self, token: str, stream_id: str) -> Principal:
        """The user a URL token lets read ``stream_id``'s events, or 401.

        Only for reading: a route that changes a stream (cancel) must not accept URL tokens
        at all. Tokens minted before read-only scopes (``stream:<id>``, which also
        cancelled) still read until they expire (at most the URL-token TTL).
        """
        return self.verify(token, (stream_read_scope(stream_id), f"stream:{stream_id}"))
