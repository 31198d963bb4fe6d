from __future__ import annotations

import pytest

from core.auth.realtime_keys import RealtimeKeys
from core.auth.url_tokens import UrlTokens
from core.errors import Unauthorized
from stream_service.realtime.auth import answer_subprotocol, offered_subprotocols
from stream_service.realtime.relay import upstream_url

SECRET = "test-secret-0123456789abcdef-0123456789"


@pytest.mark.parametrize(
    ("base", "url"),
    [
        (None, "wss://api.openai.com/v1/realtime?model=m1"),
        ("https://api.openai.com/v1/", "wss://api.openai.com/v1/realtime?model=m1"),
        ("http://127.0.0.1:9000/v1", "ws://127.0.0.1:9000/v1/realtime?model=m1"),
        (
            "https://proxy.example/openai/v1?api-version=2",
            "wss://proxy.example/openai/v1/realtime?api-version=2&model=m1",
        ),
    ],
)
def test_the_upstream_url_is_built_as_the_sdk_builds_it(base: str | None, url: str) -> None:
    assert upstream_url(base, "m1") == url


def test_client_secrets_are_bound_to_the_user_and_carry_the_session() -> None:
    keys = RealtimeKeys(SECRET)
    secret = keys.mint("alice", 60, {"type": "realtime", "instructions": "hi"})
    principal, session = keys.verify(secret.value)
    assert principal.sub == "alice" and session == {"type": "realtime", "instructions": "hi"}
    with pytest.raises(Unauthorized):
        RealtimeKeys("another-secret-0123456789abcdef-0123").verify(secret.value)
    # a URL token for something else, signed with the same key, is not a client secret
    url_token = UrlTokens(SECRET, 60).mint("alice", "ws")
    with pytest.raises(Unauthorized):
        keys.verify("ek_" + url_token)
    with pytest.raises(Unauthorized) as caught:
        keys.verify(keys.mint("alice", -1).value)
    assert caught.value.code == "token_expired"


def test_the_server_answers_realtime_only_when_offered() -> None:
    offered = offered_subprotocols("realtime, openai-insecure-api-key.ek_x, openai-beta.v1")
    assert offered[1] == "openai-insecure-api-key.ek_x"
    assert answer_subprotocol(offered) == "realtime"
    assert answer_subprotocol(offered_subprotocols(None)) is None
