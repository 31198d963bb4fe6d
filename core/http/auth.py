"""Bearer-token authentication as a Litestar dependency (``principal``)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

from litestar import Request
from litestar.di import NamedDependency, Provide

from core.auth.base import Principal, TokenVerifier
from core.auth.jwks import JwksVerifier
from core.auth.url_tokens import UrlTokens
from core.errors import Unauthorized


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'.")
    return token.strip()


async def verify_bearer(verifier: TokenVerifier, token: str) -> Principal:
    if isinstance(verifier, JwksVerifier):  # may fetch keys over the network
        return await asyncio.to_thread(verifier.verify, token)
    return verifier.verify(token)


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """Who calls: the bearer token's principal, or 401 (the ``principal`` dependency)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized(
            "You didn't provide an API key. Send 'Authorization: Bearer <token>'.",
            code="missing_api_key",
        )
    verifier: TokenVerifier = request.app.state.verifier
    return await verify_bearer(verifier, token)


async def stream_reader(
    request: Request[Any, Any, Any], stream_id: str, url_tokens: UrlTokens
) -> Principal:
    """Who reads ``stream_id``'s events: a read-only URL token for that stream (``?token=``,
    browsers' EventSource), or a bearer token. Routes that change a stream (cancel) take
    the bearer token only (:func:`provide_principal`): a URL token never cancels."""
    token = request.query_params.get("token")
    if token:
        return url_tokens.verify_stream_read(token, stream_id)
    return await provide_principal(request)


PRINCIPAL_DEPENDENCY = {"principal": Provide(provide_principal)}

# Annotate a handler parameter named ``principal`` with this to require a bearer token.
AuthPrincipal: TypeAlias = NamedDependency[Principal]
