from __future__ import annotations

import time

import jwt
import pytest

from core.auth.dev import DevTokens
from core.auth.url_tokens import UrlTokens
from core.errors import Unauthorized

SECRET = "s" * 40


def test_round_trip_and_self_minted_tokens() -> None:
    tokens = DevTokens(SECRET, ttl_s=60)
    assert tokens.verify(tokens.mint("alice")).sub == "alice"
    # Scripts can mint their own: only sub and exp are required.
    own = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    assert tokens.verify(own).sub == "bob"


@pytest.mark.parametrize(
    ("claims", "key", "code"),
    [
        ({"sub": "a", "exp": int(time.time()) - 10}, SECRET, "token_expired"),
        ({"sub": "a", "exp": int(time.time()) + 60}, "x" * 40, "invalid_signature"),
        ({"exp": int(time.time()) + 60}, SECRET, "invalid_token"),
        ({"sub": "a"}, SECRET, "invalid_token"),
    ],
)
def test_rejects_bad_tokens(claims: dict[str, object], key: str, code: str) -> None:
    token = jwt.encode(claims, key, algorithm="HS256")
    with pytest.raises(Unauthorized) as info:
        DevTokens(SECRET, ttl_s=60).verify(token)
    assert info.value.code == code
    assert info.value.status_code == 401


def test_rejects_garbage_and_alg_none() -> None:
    tokens = DevTokens(SECRET, ttl_s=60)
    with pytest.raises(Unauthorized):
        tokens.verify("not-a-jwt")
    unsigned = jwt.encode({"sub": "a", "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        tokens.verify(unsigned)


def test_url_tokens_are_scoped_to_one_resource() -> None:
    urls = UrlTokens(SECRET, ttl_s=60)
    token = urls.mint("alice", "stream:abc")
    assert urls.verify(token, "stream:abc").sub == "alice"
    with pytest.raises(Unauthorized):
        urls.verify(token, "stream:other")
    # A bearer dev token is not a URL token, even with the same key.
    with pytest.raises(Unauthorized):
        urls.verify(DevTokens(SECRET, 60).mint("alice"), "stream:abc")
