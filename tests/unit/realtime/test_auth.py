"""Who opens a voice socket: bearer JWT or client secret, or a browser's subprotocol secret."""

from __future__ import annotations

import pytest

from core.auth.dev import DevTokens
from core.auth.realtime_keys import RealtimeKeys
from core.auth.url_tokens import UrlTokens
from core.errors import Unauthorized
from stream_service.realtime.auth import authenticate

SECRET = "test-secret-0123456789abcdef-0123456789"
dev = DevTokens(SECRET, 3600)
keys = RealtimeKeys(SECRET)


async def test_a_bearer_jwt_or_client_secret_names_the_user() -> None:
    caller = await authenticate(f"Bearer {dev.mint('alice')}", [], dev, keys)
    assert (caller.principal.sub, caller.session) == ("alice", None)
    secret = keys.mint("bob", 60, {"type": "realtime", "instructions": "x"})
    caller = await authenticate(f"Bearer {secret.value}", [], dev, keys)
    assert caller.principal.sub == "bob" and caller.session == {
        "type": "realtime",
        "instructions": "x",
    }


async def test_a_browser_offers_the_secret_as_a_subprotocol() -> None:
    secret = keys.mint("carol", 60)
    offered = ["realtime", f"openai-insecure-api-key.{secret.value}"]
    assert (await authenticate(None, offered, dev, keys)).principal.sub == "carol"


@pytest.mark.parametrize(
    ("authorization", "offered", "code"),
    [
        (None, ["realtime"], "missing_api_key"),
        ("Basic abc", [], "invalid_api_key"),
        (None, ["realtime", f"openai-insecure-api-key.{dev.mint('alice')}"], "invalid_api_key"),
        (f"Bearer {UrlTokens(SECRET, 24 * 3600).mint('alice', 'ws')}", [], "invalid_token"),
    ],
)
async def test_what_does_not_open_a_voice_socket(
    authorization: str | None, offered: list[str], code: str
) -> None:
    with pytest.raises(Unauthorized) as caught:
        await authenticate(authorization, offered, dev, keys)
    assert caught.value.code == code
