"""Every kind of bad input is a 4xx in OpenAI's error shape, never a 500."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from core.settings import Settings
from tests.support.servers import ThreadServer

VALID = {"model": "local-model", "messages": [{"role": "user", "content": "hi"}]}


def _post(server: ThreadServer, token: str | None, **kwargs: object) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(
        f"{server.url}/api/v1/chat/completions", headers=headers, timeout=10, **kwargs
    )  # type: ignore[arg-type]


def _assert_error(response: httpx.Response, status: int, needle: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert needle.lower() in error["message"].lower()


@pytest.mark.parametrize(
    ("content", "status", "needle"),
    [
        (b"{not json", 400, "parse the json"),
        (b'{"model": 5, "messages": []}', 400, "model"),
        (b'{"model": "local-model", "messages": "hello"}', 400, "messages"),
        (b'{"model": "local-model"}', 400, "messages"),
        (b'{"model": "local-model", "messages": []}', 400, "at least one"),
        (
            b'{"model": "local-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}',
            400,
            "max_tokens",
        ),
        (
            b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "does not exist",
        ),
    ],
)
def test_bad_bodies(
    api_server: ThreadServer, token: str, content: bytes, status: int, needle: str
) -> None:
    _assert_error(_post(api_server, token, content=content), status, needle)


def test_oversized_body_is_413(api_server: ThreadServer, token: str, settings: Settings) -> None:
    big = (
        b'{"model": "local-model", "messages": [{"role": "user", "content": "'
        + b"x" * settings.max_request_bytes
        + b'"}]}'
    )
    _assert_error(_post(api_server, token, content=big), 413, "")


def test_too_many_messages(api_server: ThreadServer, token: str, settings: Settings) -> None:
    body = {**VALID, "messages": [{"role": "user", "content": "x"}] * (settings.max_messages + 1)}
    _assert_error(_post(api_server, token, json=body), 400, f"limit is {settings.max_messages}")


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda s: None, "missing_api_key"),
        (
            lambda s: jwt.encode({"sub": "a", "exp": int(time.time()) - 120}, s, algorithm="HS256"),
            "token_expired",
        ),
        (
            lambda s: jwt.encode(
                {"sub": "a", "exp": int(time.time()) + 60}, "w" * 40, algorithm="HS256"
            ),
            "invalid_signature",
        ),
        (lambda s: "garbage", "invalid_token"),
    ],
)
def test_auth_failures_are_401(
    api_server: ThreadServer, settings: Settings, make_token: object, code: str
) -> None:
    token = make_token(settings.auth_dev_secret.get_secret_value())  # type: ignore[operator]
    response = _post(api_server, token, json=VALID)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code


def test_unknown_route_and_method(api_server: ThreadServer, token: str) -> None:
    response = httpx.get(
        f"{api_server.url}/api/v1/nothing-here", headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 404
    assert "error" in response.json()
    response = httpx.delete(
        f"{api_server.url}/api/v1/models", headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 405
    assert "error" in response.json()


def test_dev_token_validation(api_server: ThreadServer) -> None:
    for body in (b"{", b'{"sub": ""}', b'{"sub": "a b"}', b"[]"):
        response = httpx.post(f"{api_server.url}/api/v1/dev/token", content=body)
        assert response.status_code == 400, body
        assert "error" in response.json()
