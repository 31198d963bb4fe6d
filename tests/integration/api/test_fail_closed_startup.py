"""Every entry point refuses to start with auth that would accept forged tokens."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.servers import ROOT

_BASE = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("AUTH_", "JWT_", "URL_TOKEN", "DYNAMODB_", "OPENAI_"))
}
_JWT = {
    "AUTH_MODE": "jwt",
    "JWT_JWKS_URL": "http://127.0.0.1:9/jwks.json",
    "JWT_ISSUER": "https://issuer.example",
    "JWT_AUDIENCE": "client-1",
    "STREAM_STORE": "memory",
}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env={**_BASE, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["stream_service", "devstack"])
def test_dev_auth_on_a_public_address_does_not_start(module: str) -> None:
    out = _run(["-m", module, "--host", "0.0.0.0", "--port", "9"], {"STREAM_STORE": "memory"})
    assert out.returncode != 0
    assert "AUTH_DEV_ALLOW_PUBLIC" in out.stderr


def test_stream_service_in_jwt_mode_needs_its_own_url_token_key() -> None:
    out = _run(["-m", "stream_service", "--host", "0.0.0.0", "--port", "9"], _JWT)
    assert out.returncode != 0
    assert "URL_TOKEN_SECRET" in out.stderr
    short = _run(
        ["-m", "stream_service", "--host", "0.0.0.0", "--port", "9"],
        {**_JWT, "URL_TOKEN_SECRET": "short"},
    )
    assert short.returncode != 0
    assert "at least 32 bytes" in short.stderr


def test_stream_service_in_jwt_mode_without_an_audience_does_not_start() -> None:
    env = {k: v for k, v in _JWT.items() if k != "JWT_AUDIENCE"}
    out = _run(["-m", "stream_service", "--host", "0.0.0.0", "--port", "9"], env)
    assert out.returncode != 0
    assert "JWT_AUDIENCE" in out.stderr


def test_lambda_handler_in_dev_auth_needs_consent() -> None:
    out = _run(["-c", "import functions.api.handler"], {"AUTH_MODE": "dev"})
    assert out.returncode != 0
    assert "AUTH_DEV_ALLOW_PUBLIC" in out.stderr
    allowed = _run(
        ["-c", "import functions.api.handler"], {"AUTH_MODE": "dev", "AUTH_DEV_ALLOW_PUBLIC": "1"}
    )
    assert allowed.returncode == 0, allowed.stderr
