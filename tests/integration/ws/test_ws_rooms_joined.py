"""A room stays joinable whatever its messages hold (issue 18): `joined` is bounded by
what it costs on the wire, not by the stored bytes. Six messages of 32 KiB of control
characters (each 6 bytes JSON-escaped) are 1.2 MB on the wire, over the 1 MiB send buffer
(`WS_SEND_BUFFER_BYTES`); two nodes, moto's DynamoDB server, a real redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from core.auth.dev import DevTokens
from tests.integration.ws.conftest import bearer, open_ws, ws_url
from tests.integration.ws.test_ws_rooms import join, make_room, names
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

POISON = "\x01" * (32 * 1024 - 1)  # with its digit: ROOM_MAX_MESSAGE_BYTES, 196 KB escaped


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes(node_env)


@pytest.fixture(scope="module")
def cluster(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("joined-a", "joined-b")


async def test_a_room_poisoned_with_control_characters_stays_joinable(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id = await make_room(a, tokens, alice_name, bob_name)
    alice = await join(a, tokens, alice_name, room_id)
    for n in range(6):
        await alice.send({"type": "chat.send", "room": room_id, "ref": f"p{n}",
                          "content": POISON + str(n)})  # fmt: skip
        stream_id = (await alice.expect({"type": "stream.created", "ref": f"p{n}"}))["stream_id"]
        await alice.stream(stream_id, within=30)

    # bob joins on the other node: a `joined` he can receive, the newest messages in it
    conn = await connect(ws_url(b), additional_headers=bearer(tokens, bob_name),
                         open_timeout=10, max_size=None)  # fmt: skip
    await conn.send(json.dumps({"type": "join", "room": room_id}))
    raw = await conn.recv()
    await conn.close()
    assert len(raw) <= 512 * 1024  # ROOM_JOINED_MAX_BYTES (half the send buffer)
    bob = await join(b, tokens, bob_name, room_id)
    frame = next(f for f in bob.frames if f["type"] == "joined")
    assert frame["truncated"] is True
    held = frame["messages"]
    assert held and held[-1]["role"] == "assistant"
    assert [m["content"] for m in held if m["role"] == "user"][-1] == POISON + "5"
    ids = [m["id"] for m in held]
    assert ids == sorted(ids)  # the newest ones, in order

    # and the socket works on: ping, a new message live
    await bob.send({"type": "ping"})
    await bob.expect({"type": "pong"})
    await alice.send({"type": "chat.send", "room": room_id, "ref": "ok", "content": "still here"})
    await bob.expect({"type": "message", "content": "still here"}, within=10)
    assert bob.close_code is None
    other = await open_ws(a, tokens, alice_name)  # and again on the first node
    await other.send({"type": "join", "room": room_id})
    await other.expect({"type": "joined", "room": room_id})
    for ws in (alice, bob, other):
        await ws.close()
