"""URL tokens: read-only stream scopes, 15 minutes by default, kept out of logs."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient

from core.auth.url_tokens import UrlTokens, redact_url_token, stream_read_scope
from core.errors import Unauthorized
from core.http.errors import EXCEPTION_HANDLERS
from core.settings import Settings

KEY = "k" * 40
STREAM = "0123456789abcdef0123456789abcdef"
OTHER = "f" * 32


def test_default_lifetime_is_15_minutes() -> None:
    assert Settings().url_token_ttl_s == 900
    tokens = UrlTokens(KEY, Settings().url_token_ttl_s)
    claims = jwt.decode(
        tokens.mint_stream_read("alice", STREAM), KEY, ["HS256"], audience="rtai-url"
    )
    assert claims["exp"] - claims["iat"] == 900
    assert claims["scope"] == stream_read_scope(STREAM) == f"stream:{STREAM}:read"


def test_a_read_token_reads_its_stream_only() -> None:
    tokens = UrlTokens(KEY, 60)
    token = tokens.mint_stream_read("alice", STREAM)
    assert tokens.verify_stream_read(token, STREAM).sub == "alice"
    with pytest.raises(Unauthorized, match="another resource"):
        tokens.verify_stream_read(token, OTHER)
    # ...and is no token for anything else (a cancel route asks for another scope, or none)
    with pytest.raises(Unauthorized):
        tokens.verify(token, f"stream:{STREAM}")
    with pytest.raises(Unauthorized):
        tokens.verify(token, "ws")


def test_a_pre_read_only_token_still_reads_until_it_expires() -> None:
    tokens = UrlTokens(KEY, 60)
    legacy = tokens.mint("alice", f"stream:{STREAM}")
    assert tokens.verify_stream_read(legacy, STREAM).sub == "alice"


def test_expired_and_foreign_key_tokens_are_refused() -> None:
    expired = jwt.encode(
        {
            "sub": "a",
            "scope": stream_read_scope(STREAM),
            "aud": "rtai-url",
            "exp": int(time.time()) - 5,
        },
        KEY,
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized, match="expired"):
        UrlTokens(KEY, 60).verify_stream_read(expired, STREAM)
    forged = UrlTokens("z" * 40, 60).mint_stream_read("a", STREAM)
    with pytest.raises(Unauthorized, match="signature"):
        UrlTokens(KEY, 60).verify_stream_read(forged, STREAM)


def test_events_url_carries_a_fresh_read_token() -> None:
    tokens = UrlTokens(KEY, 60)
    url = tokens.stream_events_url("alice", STREAM)
    path, _, token = url.partition("?token=")
    assert path == f"/stream/v1/streams/{STREAM}/events"
    assert tokens.verify_stream_read(token, STREAM).sub == "alice"


def test_redaction() -> None:
    line = f"GET /stream/v1/streams/{STREAM}/events?token=abc.def.ghi&format=openai 200"
    assert redact_url_token(line) == (
        f"GET /stream/v1/streams/{STREAM}/events?token=[redacted]&format=openai 200"
    )
    assert redact_url_token("/x?a=1&token=t") == "/x?a=1&token=[redacted]"


def test_an_unhandled_error_does_not_log_the_url_token(caplog: pytest.LogCaptureFixture) -> None:
    @get("/stream/v1/streams/{stream_id:str}/events", sync_to_thread=False)
    def boom(stream_id: FromPath[str]) -> None:
        raise RuntimeError("boom")

    app = Litestar([boom], exception_handlers=EXCEPTION_HANDLERS, logging_config=None)
    secret = UrlTokens(KEY, 60).mint_stream_read("alice", STREAM)
    with caplog.at_level(logging.DEBUG), TestClient(app) as client:
        response = client.get(f"/stream/v1/streams/{STREAM}/events?token={secret}")
    assert response.status_code == 500
    service_lines = [r.getMessage() for r in caplog.records if r.name.startswith("rtai")]
    assert service_lines  # the error is logged...
    assert not any(secret in line for line in service_lines)  # ...without the token


def test_stream_reader_takes_a_read_token_or_a_bearer_token() -> None:
    from litestar import Request, post
    from litestar.datastructures import State

    from core.auth.dev import DevTokens
    from core.http.auth import provide_principal, stream_reader

    urls = UrlTokens(KEY, 60)
    bearer = DevTokens(KEY, 60)

    @get("/s/{stream_id:str}/events")
    async def events(request: Request[Any, Any, Any], stream_id: FromPath[str]) -> dict[str, str]:
        return {"sub": (await stream_reader(request, stream_id, urls)).sub}

    @post("/s/{stream_id:str}/cancel", status_code=200)
    async def cancel(request: Request[Any, Any, Any], stream_id: FromPath[str]) -> dict[str, str]:
        return {"sub": (await provide_principal(request)).sub}  # bearer only

    app = Litestar(
        [events, cancel],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State({"verifier": bearer}),
        logging_config=None,
    )
    read = urls.mint_stream_read("alice", STREAM)
    with TestClient(app) as client:
        assert client.get(f"/s/{STREAM}/events?token={read}").json() == {"sub": "alice"}
        assert client.get(f"/s/{OTHER}/events?token={read}").status_code == 401
        headers = {"Authorization": f"Bearer {bearer.mint('bob')}"}
        assert client.get(f"/s/{STREAM}/events", headers=headers).json() == {"sub": "bob"}
        assert client.post(f"/s/{STREAM}/cancel?token={read}").status_code == 401
        assert client.post(f"/s/{STREAM}/cancel", headers=headers).json() == {"sub": "bob"}
