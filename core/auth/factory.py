"""Builds the bearer-token verifier for ``AUTH_MODE``."""

from __future__ import annotations

from core.auth.base import TokenVerifier
from core.auth.dev import DevTokens
from core.auth.jwks import JwksVerifier
from core.settings import Settings


def dev_tokens(settings: Settings) -> DevTokens:
    return DevTokens(
        settings.auth_dev_secret.get_secret_value(), settings.dev_token_ttl_s, settings.jwt_leeway_s
    )


def build_verifier(settings: Settings) -> TokenVerifier:
    if settings.auth_mode == "dev":
        return dev_tokens(settings)
    assert settings.jwt_jwks_url is not None  # checked by Settings
    return JwksVerifier(
        settings.jwt_jwks_url, settings.jwt_issuer, settings.jwt_audience, settings.jwt_leeway_s
    )
