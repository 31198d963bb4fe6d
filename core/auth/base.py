"""The verifier interface and the authenticated principal."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import jwt

from core.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. ``scope`` is set for URL tokens bound to one resource."""

    sub: str
    scope: str | None = None


class TokenVerifier(abc.ABC):
    """Turns a bearer token into a :class:`Principal`, or raises :class:`Unauthorized`."""

    @abc.abstractmethod
    def verify(self, token: str) -> Principal: ...


def principal_from_claims(claims: dict[str, object]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("Token has no 'sub' claim.")
    scope = claims.get("scope")
    return Principal(sub=sub, scope=scope if isinstance(scope, str) else None)


def unauthorized_from(exc: jwt.PyJWTError) -> Unauthorized:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return Unauthorized("Token has expired.", code="token_expired")
    if isinstance(exc, jwt.InvalidSignatureError):
        return Unauthorized("Token signature is invalid.", code="invalid_signature")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Unauthorized(f"Token is missing the '{exc.claim}' claim.", code="invalid_token")
    return Unauthorized(f"Invalid token: {exc}", code="invalid_token")
