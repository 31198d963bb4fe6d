"""Fail closed: configurations that would accept forged tokens are start-up errors."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from core.settings import (
    InsecureConfiguration,
    Settings,
    is_loopback,
    require_safe_exposure,
)

JWT = {
    "auth_mode": "jwt",
    "jwt_jwks_url": "https://issuer.example/.well-known/jwks.json",
    "jwt_issuer": "https://issuer.example",
    "jwt_audience": "client-1",
}
KEY = "k" * 32


@pytest.mark.parametrize("missing", ["jwt_jwks_url", "jwt_issuer", "jwt_audience"])
def test_jwt_mode_needs_jwks_issuer_and_audience(missing: str) -> None:
    with pytest.raises(ValidationError, match=missing.upper()):
        Settings(**{k: v for k, v in JWT.items() if k != missing})  # type: ignore[arg-type]


def test_jwt_mode_never_signs_url_tokens_with_the_dev_secret() -> None:
    settings = Settings(**JWT)  # type: ignore[arg-type]
    with pytest.raises(InsecureConfiguration, match="URL_TOKEN_SECRET"):
        _ = settings.url_token_key
    assert Settings(**JWT, url_token_secret=KEY).url_token_key == KEY  # type: ignore[arg-type]


def test_a_short_url_token_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(**JWT, url_token_secret="k" * 31)  # type: ignore[arg-type]


def test_dev_mode_keeps_its_url_token_fallback() -> None:
    settings = Settings(auth_mode="dev")
    assert settings.url_token_key == settings.auth_dev_secret.get_secret_value()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    require_safe_exposure(Settings(auth_mode="dev"), host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com", None])
def test_dev_auth_refuses_anything_but_loopback(host: str | None) -> None:
    with pytest.raises(InsecureConfiguration, match="AUTH_DEV_ALLOW_PUBLIC"):
        require_safe_exposure(Settings(auth_mode="dev"), host)


def test_allow_public_says_so_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rtai.settings"):
        require_safe_exposure(Settings(auth_mode="dev", auth_dev_allow_public=True), "0.0.0.0")
    assert "PUBLISHED default secret" in caplog.text
    assert "0.0.0.0" in caplog.text


def test_jwt_mode_may_listen_anywhere() -> None:
    require_safe_exposure(Settings(**JWT, url_token_secret=KEY), "0.0.0.0")  # type: ignore[arg-type]
    require_safe_exposure(Settings(**JWT, url_token_secret=KEY), None)  # type: ignore[arg-type]
