"""Local HS256 tokens (``AUTH_MODE=dev``): any process with the same secret accepts them."""

from __future__ import annotations

import time

import jwt

from core.auth.base import Principal, TokenVerifier, principal_from_claims, unauthorized_from

ALGORITHM = "HS256"


class DevTokens(TokenVerifier):
    def __init__(self, secret: str, ttl_s: int, leeway_s: int = 0) -> None:
        self._secret = secret
        self.ttl_s = ttl_s
        self._leeway = leeway_s

    def mint(self, sub: str, ttl_s: int | None = None) -> str:
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + (ttl_s or self.ttl_s)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "exp"]},
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise unauthorized_from(exc) from exc
        return principal_from_claims(claims)
