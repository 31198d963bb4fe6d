"""AUTH_MODE=jwt: RS256 tokens verified against a JWKS served over HTTP (as Cognito does)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from core.settings import Settings
from functions.api.app import create_app
from tests.support.servers import ThreadServer

ISSUER = "https://cognito-idp.local/pool"


class JwksApp:
    def __init__(self, jwk: dict[str, Any]) -> None:
        self.body = json.dumps({"keys": [jwk]}).encode()
        self.hits = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.hits += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwt_api(rsa_key: rsa.RSAPrivateKey) -> Iterator[tuple[ThreadServer, JwksApp]]:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    jwks = JwksApp(jwk)
    with ThreadServer(jwks) as jwks_server:
        settings = Settings(
            auth_mode="jwt",
            jwt_jwks_url=f"{jwks_server.url}/.well-known/jwks.json",
            jwt_issuer=ISSUER,
            jwt_audience="client-1",
            local_ttft_ms=0,
            local_token_delay_ms=0,
        )
        with ThreadServer(create_app(settings)) as api:
            yield api, jwks


def _token(key: Any, **claims: Any) -> str:
    base = {
        "sub": "carol",
        "iss": ISSUER,
        "client_id": "client-1",
        "exp": int(time.time()) + 60,
        "token_use": "access",
    }
    base.update(claims)
    return jwt.encode(base, key, algorithm="RS256", headers={"kid": "k1"})


def test_cognito_style_access_token_is_accepted(
    jwt_api: tuple[ThreadServer, JwksApp], rsa_key: rsa.RSAPrivateKey
) -> None:
    api, jwks = jwt_api
    headers = {"authorization": f"Bearer {_token(rsa_key)}"}
    assert httpx.get(f"{api.url}/api/v1/models", headers=headers).status_code == 200
    assert httpx.get(f"{api.url}/api/v1/models", headers=headers).status_code == 200
    assert jwks.hits == 1  # keys are cached


@pytest.mark.parametrize(
    "claims",
    [{"iss": "https://evil"}, {"client_id": "other"}, {"exp": int(time.time()) - 120}],
)
def test_wrong_issuer_audience_or_expired(
    jwt_api: tuple[ThreadServer, JwksApp], rsa_key: rsa.RSAPrivateKey, claims: dict[str, Any]
) -> None:
    api, _ = jwt_api
    response = httpx.get(
        f"{api.url}/api/v1/models", headers={"authorization": f"Bearer {_token(rsa_key, **claims)}"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_other_key_and_no_dev_route(jwt_api: tuple[ThreadServer, JwksApp]) -> None:
    api, _ = jwt_api
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = httpx.get(
        f"{api.url}/api/v1/models", headers={"authorization": f"Bearer {_token(other)}"}
    )
    assert response.status_code == 401
    assert httpx.post(f"{api.url}/api/v1/dev/token", json={"sub": "x"}).status_code == 404


def test_unknown_key_ids_refetch_keys_at_most_once_a_minute(
    jwt_api: tuple[ThreadServer, JwksApp], rsa_key: rsa.RSAPrivateKey
) -> None:
    api, jwks = jwt_api
    good = {"authorization": f"Bearer {_token(rsa_key)}"}
    assert httpx.get(f"{api.url}/api/v1/models", headers=good).status_code == 200
    for n in range(3):
        forged = jwt.encode(
            {"sub": "x", "exp": int(time.time()) + 60},
            rsa_key,
            algorithm="RS256",
            headers={"kid": f"made-up-{n}"},
        )
        response = httpx.get(
            f"{api.url}/api/v1/models", headers={"authorization": f"Bearer {forged}"}
        )
        assert response.status_code == 401
    assert jwks.hits == 2  # the first fetch, then one refresh for all three unknown ids


def test_a_cognito_id_token_is_not_an_access_token(
    jwt_api: tuple[ThreadServer, JwksApp], rsa_key: rsa.RSAPrivateKey
) -> None:
    """Same pool, same keys, the app client as audience: an ID token still gets 401."""
    api, _ = jwt_api
    id_token = _token(rsa_key, token_use="id", aud="client-1", client_id=None)
    reply = httpx.get(f"{api.url}/api/v1/models", headers={"authorization": f"Bearer {id_token}"})
    assert reply.status_code == 401
    error = reply.json()["error"]
    assert error["code"] == "invalid_token" and "access token" in error["message"]
    access = _token(rsa_key)
    ok = httpx.get(f"{api.url}/api/v1/models", headers={"authorization": f"Bearer {access}"})
    assert ok.status_code == 200
