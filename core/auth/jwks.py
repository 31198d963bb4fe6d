"""JWTs from a JWKS issuer (``AUTH_MODE=jwt``), e.g. a Cognito user pool.

Keys are fetched from ``JWT_JWKS_URL`` by PyJWT's ``PyJWKClient`` and cached; an unknown
``kid`` triggers one refetch (key rotation). Cognito access tokens carry ``client_id``
instead of ``aud``: either matches ``JWT_AUDIENCE``.

Only access tokens open the API: a Cognito *ID* token (``token_use: id``, ``aud`` = the app
client, signed by the same keys) says who the user is to the client app, not what it may
call, so it is refused (401 ``invalid_token``) even though its signature, issuer and
audience check out. A token without ``token_use`` (issuers other than Cognito) is judged by
signature, issuer and audience alone.
"""

from __future__ import annotations

import contextlib
import threading
import time

import jwt

from core.auth.base import Principal, TokenVerifier, principal_from_claims, unauthorized_from
from core.errors import Unauthorized

_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384"]
# An unknown key id refetches the issuer's keys (rotation) at most this often, so tokens
# with made-up key ids cannot turn every request into an outbound fetch.
_REFRESH_EVERY_S = 60.0
ACCESS_TOKEN_USE = "access"


class JwksVerifier(TokenVerifier):
    def __init__(
        self, jwks_url: str, issuer: str | None, audience: str | None, leeway_s: int = 30
    ) -> None:
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600, timeout=5)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._refreshed_at = float("-inf")
        self._refresh_lock = threading.Lock()

    def _signing_key(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str):
            raise Unauthorized("Token has no key id ('kid').", code="invalid_token")
        with contextlib.suppress(jwt.PyJWKClientError):
            key = self._jwks.match_kid(self._jwks.get_signing_keys(), kid)
            if key is not None:
                return key
        with self._refresh_lock:
            if time.monotonic() - self._refreshed_at < _REFRESH_EVERY_S:
                raise Unauthorized("Token signed with an unknown key.", code="invalid_token")
            self._refreshed_at = time.monotonic()
        key = self._jwks.match_kid(self._jwks.get_signing_keys(refresh=True), kid)
        if key is None:
            raise Unauthorized("Token signed with an unknown key.", code="invalid_token")
        return key

    def verify(self, token: str) -> Principal:
        try:
            key = self._signing_key(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=_ALGORITHMS,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["sub", "exp"], "verify_aud": False},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthorized("Could not fetch the issuer's signing keys.") from exc
        except jwt.PyJWTError as exc:
            raise unauthorized_from(exc) from exc
        token_use = claims.get("token_use", ACCESS_TOKEN_USE)
        if token_use != ACCESS_TOKEN_USE:
            raise Unauthorized(
                f"A {token_use!r} token is not accepted here; send the access token.",
                code="invalid_token",
            )
        if self._audience is not None:
            aud = claims.get("aud", claims.get("client_id"))
            audiences = aud if isinstance(aud, list) else [aud]
            if self._audience not in audiences:
                raise Unauthorized("Token audience does not match.", code="invalid_token")
        claims.pop("scope", None)  # OAuth scopes are not this service's URL scopes
        return principal_from_claims(claims)
