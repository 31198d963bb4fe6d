"""Short-lived tokens carried in URLs, each scoped to one resource.

Browsers cannot set headers on EventSource or WebSocket, so the API hands out URLs with
``?token=...``: an HS256 JWT signed with the server's URL-token key whose ``scope`` names
the one stream (``stream:<id>``) or connection (``ws``) it opens.
"""

from __future__ import annotations

import time

import jwt

from core.auth.base import Principal, principal_from_claims, unauthorized_from
from core.errors import Unauthorized

_AUDIENCE = "rtai-url"


class UrlTokens:
    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def mint(self, sub: str, scope: str) -> str:
        now = int(time.time())
        claims = {"sub": sub, "scope": scope, "aud": _AUDIENCE, "iat": now, "exp": now + self.ttl_s}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str, scope: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=_AUDIENCE,
                options={"require": ["sub", "exp", "scope"]},
            )
        except jwt.PyJWTError as exc:
            raise unauthorized_from(exc) from exc
        principal = principal_from_claims(claims)
        if principal.scope != scope:
            raise Unauthorized("This URL token is for another resource.", code="invalid_token")
        return principal
