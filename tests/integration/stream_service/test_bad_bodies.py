"""A request body that cannot be decoded, for any reason, is a 400 in OpenAI's error shape
on every stream-service route that takes one, and nothing on a route that takes none
(issue 18, finding 11): thousands of nested arrays (``RecursionError`` in the decoder),
bytes that are not UTF-8 (``UnicodeDecodeError``), and both inside valid-looking JSON.
A real node on moto's DynamoDB server."""

from __future__ import annotations

import httpx
import pytest

from core.auth.dev import DevTokens
from tests.integration.stream_service.conftest import MODEL, auth, create
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

DEEP = b"[" * 5000 + b"]" * 5000
BODIES = {
    "deep array": DEEP,
    "deep inside an object": b'{"user": "bob", "x": ' + DEEP + b"}",
    "deep chat field": b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}],'
    b' "metadata": %s}' % (MODEL.encode(), DEEP),
    "invalid utf-8": b"\xff\xfe\xfd",
    "invalid utf-8 in a string": b'{"user": "\xc3\x28"}',
    "invalid utf-8 in a chat": b'{"model": "%s", "messages": [{"role": "user",'
    b' "content": "\xc3\x28"}]}' % MODEL.encode(),
}


def _post(node: ProcessServer, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(
        node.url + path,
        content=body,
        headers={**headers, "content-type": "application/json"},
        timeout=10,
    )


def test_undecodable_bodies_are_400s_everywhere(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    node, _ = cluster
    headers = auth(tokens, "bad-bodies")
    room = httpx.post(node.url + "/stream/v1/rooms", headers=headers, timeout=10)
    assert room.status_code == 201, room.text
    stream_id = create(node, headers, tokens_out=2).json()["id"]
    reading = {  # routes that read a body: each answers 400
        "/stream/v1/streams",
        "/stream/v1/chat/completions",
        f"/stream/v1/rooms/{room.json()['id']}/members",
    }
    ignoring = {  # routes that take no body: it is not read at all
        "/stream/v1/rooms",
        "/stream/v1/ws/tickets",
        f"/stream/v1/streams/{stream_id}/cancel",
    }
    for path in sorted(reading | ignoring):
        for name, body in BODIES.items():
            response = _post(node, path, headers, body)
            assert response.status_code < 500, (path, name, response.text)
            if path in reading:
                assert response.status_code == 400, (path, name, response.text)
                error = response.json()["error"]
                assert error["type"] == "invalid_request_error" and error["message"], error
