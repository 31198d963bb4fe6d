from __future__ import annotations

import json

import pytest

from core.errors import ApiError, InvalidRequest, PayloadTooLarge
from core.schemas.chat import parse_chat_request
from core.settings import Settings

SETTINGS = Settings(
    max_request_bytes=10_000, max_messages=4, max_message_chars=100, max_output_tokens=50
)


def _body(**fields: object) -> bytes:
    base: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    base.update(fields)
    return json.dumps(base).encode()


def test_valid_request_parses_with_multipart_content() -> None:
    body = _body(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    )
    request = parse_chat_request(body, SETTINGS)
    assert request.messages[0].text() == "ab"


def test_unknown_fields_are_ignored() -> None:
    assert parse_chat_request(_body(seed=1, logit_bias={}), SETTINGS).model == "m"


@pytest.mark.parametrize(
    ("body", "error", "needle"),
    [
        (b"{nope", InvalidRequest, "parse the JSON"),
        (b"", InvalidRequest, "empty"),
        (_body(messages="hi"), InvalidRequest, "messages"),
        (_body(messages=[]), InvalidRequest, "at least one"),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(),
            InvalidRequest,
            "model",
        ),
        (_body(messages=[{"role": "user", "content": "x"}] * 5), InvalidRequest, "limit is 4"),
        (
            _body(messages=[{"role": "user", "content": "x" * 101}]),
            InvalidRequest,
            "longer than 100",
        ),
        (_body(max_tokens=0), InvalidRequest, "between 1 and 50"),
        (_body(max_tokens=51), InvalidRequest, "between 1 and 50"),
        (_body(max_tokens="many"), InvalidRequest, "max_tokens"),
        (_body(messages=[{"role": "wizard", "content": "x"}]), InvalidRequest, "role"),
        (_body(temperature=3), InvalidRequest, "temperature"),
        (
            _body(messages=[{"role": "user", "content": "x" * 20_000}]),
            PayloadTooLarge,
            "limit is 10000",
        ),
    ],
)
def test_bad_input_is_a_clear_4xx(body: bytes, error: type[ApiError], needle: str) -> None:
    with pytest.raises(error) as info:
        parse_chat_request(body, SETTINGS)
    assert 400 <= info.value.status_code < 500
    assert needle in info.value.message
    assert info.value.body()["error"]["type"] == "invalid_request_error"
