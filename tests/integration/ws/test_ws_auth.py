"""Auth before the upgrade (SPEC section 6): a bearer header or a short-lived ticket from
``POST /stream/v1/ws/tickets``; anything else is refused on the handshake, before any
message."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from core.auth import UrlTokens
from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.integration.ws.conftest import (
    WsClient,
    bearer,
    chat_request,
    open_ws,
    post,
    sse,
    text_of,
    ws_url,
)
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes(node_env)


@pytest.fixture(scope="module")
def node(nodes: Nodes) -> ProcessServer:
    return nodes.start(NODE_ID="auth-a")


async def refused(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=headers or {}, open_timeout=10):
            pass
    return info.value.response.status_code


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer not-a-jwt"},
        {"authorization": "Basic YWxpY2U6cHc="},
        {"authorization": "Bearer "},
    ],
    ids=["none", "garbage-bearer", "basic", "empty-bearer"],
)
async def test_no_or_bad_credentials_are_refused_on_the_handshake(
    node: ProcessServer, headers: dict[str, str]
) -> None:
    assert await refused(ws_url(node), headers) in (401, 403)


async def test_expired_or_forged_bearer_is_refused(node: ProcessServer) -> None:
    expired = DevTokens(DEV_SECRET_DEFAULT, -30).mint("alice")
    forged = DevTokens("another-secret-of-enough-length-0123456789", 3600).mint("alice")
    for token in (expired, forged):
        status = await refused(ws_url(node), {"authorization": f"Bearer {token}"})
        assert status in (401, 403)


async def test_bearer_header_opens_a_socket_as_its_user(
    node: ProcessServer, tokens: DevTokens
) -> None:
    ws = await open_ws(node, tokens, "alice")  # the client offers permessage-deflate
    await ws.send({"type": "ping"})
    assert await ws.expect({"type": "pong"}) == {"type": "pong"}
    assert ws.conn.response is not None
    # compression is off unless configured (it costs tens of KB per connection)
    assert "sec-websocket-extensions" not in ws.conn.response.headers
    await ws.close()


async def test_ticket_opens_a_socket_bound_to_its_user(
    node: ProcessServer, tokens: DevTokens
) -> None:
    answer = await post(node, "/stream/v1/ws/tickets", bearer(tokens, "alice"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert 0 < body["expires_in"] <= 60
    assert body["url"].startswith("/stream/v1/ws?ticket=")

    async with connect(ws_url(node, body["url"]), open_timeout=10) as conn:
        ws = WsClient(conn, "alice-ticket")
        await ws.send({"type": "chat.send", "ref": "r1", **chat_request("/tokens 5")})
        created = await ws.expect({"type": "stream.created", "ref": "r1"})
        frames = await ws.stream(created["stream_id"])
        assert frames[-1]["type"] == "done"
    stream_id = created["stream_id"]
    # the stream is alice's (the ticket's user): she reads it over SSE, bob does not
    mine = await sse(
        node, f"/stream/v1/streams/{stream_id}/events", headers=bearer(tokens, "alice")
    )
    assert mine.status == 200 and mine.text == text_of(frames)
    other = await sse(node, f"/stream/v1/streams/{stream_id}/events", headers=bearer(tokens, "bob"))
    assert other.status == 404


async def test_tickets_need_a_bearer(node: ProcessServer) -> None:
    answer = await post(node, "/stream/v1/ws/tickets", {})
    assert answer.status_code == 401


async def test_expired_foreign_or_wrong_scope_tickets_are_refused(
    node: ProcessServer, tokens: DevTokens
) -> None:
    expired = UrlTokens(DEV_SECRET_DEFAULT, -30).mint("alice", "ws")
    foreign = UrlTokens("a-key-this-cluster-does-not-have-0123456789", 60).mint("alice", "ws")
    stream_scoped = UrlTokens(DEV_SECRET_DEFAULT, 60).mint("alice", "stream:abc")
    bearer_as_ticket = tokens.mint("alice")  # a JWT for the API, not a ticket
    for ticket in (expired, foreign, stream_scoped, bearer_as_ticket, "garbage"):
        assert await refused(ws_url(node, f"/stream/v1/ws?ticket={ticket}")) in (401, 403)
