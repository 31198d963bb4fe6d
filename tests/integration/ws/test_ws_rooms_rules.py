"""Room rules on two nodes (moto DynamoDB server, real redis-server), issue 18: a refused
room ``chat.send`` stores and sends nothing (its retry is the only copy); a message ends
its author's typing on every node; an assistant reply longer than
``ROOM_MAX_MESSAGE_BYTES`` is kept whole, in parts, in ``joined`` and in the next reply's
context; rooms per user and rooms per socket are limited, with errors in the contract's
shape."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.auth.dev import DevTokens
from core.providers.local import script_reply
from core.schemas.chat import ChatCompletionRequest
from stream_service.rooms.conversation import as_chat_messages
from stream_service.store.rooms_base import RoomMessage
from tests.integration.ws.conftest import (
    MODEL,
    WsClient,
    bearer,
    chat_request,
    open_ws,
    post,
    text_of,
)
from tests.integration.ws.test_ws_rooms import join, make_room, names
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

MAX_MESSAGE_BYTES = 100  # a room reply (48 tokens of the local model) is ~280 bytes
RULES_ENV = {
    "LOCAL_TOKEN_DELAY_MS": "20",
    "TYPING_TTL_S": "30",  # a cleared typing state is told long before it would lapse
    "ROOM_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
    "ROOM_MAX_ROOMS_PER_USER": "3",
    "ROOM_MAX_JOINED_PER_SOCKET": "2",
}


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes({**node_env, **RULES_ENV})


@pytest.fixture(scope="module")
def cluster(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("rules-a", "rules-b")


async def history(node: ProcessServer, tokens: DevTokens, user: str, room_id: str) -> list[Any]:
    """The conversation a fresh `joined` holds."""
    ws = await join(node, tokens, user, room_id)
    frame = next(f for f in ws.frames if f["type"] == "joined")
    await ws.close()
    messages: list[Any] = frame["messages"]
    return messages


def messages_with(ws: WsClient, content: str) -> list[dict[str, Any]]:
    return [f for f in ws.frames if f["type"] == "message" and f.get("content") == content]


async def test_a_refused_room_send_stores_nothing_and_its_retry_is_the_only_copy(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id = await make_room(a, tokens, alice_name, bob_name)
    alice = await join(a, tokens, alice_name, room_id)
    bob = await join(b, tokens, bob_name, room_id)

    # an unknown model: refused, nothing stored or sent
    await alice.send({"type": "chat.send", "room": room_id, "ref": "m0", "content": "first?",
                      "model": "no-such-model"})  # fmt: skip
    refused = await alice.expect({"type": "error", "ref": "m0"})
    assert refused["code"] == "model_not_found"

    # at her per-user limit (MAX_STREAMS_PER_USER=2): refused, nothing stored or sent
    busy = []
    for ref in ("p1", "p2"):
        await alice.send({"type": "chat.send", "ref": ref, **chat_request("/tokens 2000")})
        busy.append((await alice.expect({"type": "stream.created", "ref": ref}))["stream_id"])
    await alice.send({"type": "chat.send", "room": room_id, "ref": "m1", "content": "hello?"})
    refused = await alice.expect({"type": "error", "ref": "m1"})
    assert refused["code"] == "too_many_streams"
    await asyncio.sleep(1.5)  # what the bus would have brought by now
    for ws in (alice, bob):
        assert messages_with(ws, "first?") == [] and messages_with(ws, "hello?") == [], ws.name
        assert [f for f in ws.frames if f["type"] == "delta" and f["stream_id"] not in busy] == []
    assert await history(b, tokens, bob_name, room_id) == []

    # the retry, once she has room again: one message, one reply, for everyone
    for stream_id in busy:
        await alice.send({"type": "cancel", "stream_id": stream_id})
    for stream_id in busy:
        await alice.stream(stream_id)
    await alice.send({"type": "chat.send", "room": room_id, "ref": "m2", "content": "hello?"})
    stream_id = (await alice.expect({"type": "stream.created", "ref": "m2"}))["stream_id"]
    for ws in (alice, bob):
        assert (await ws.stream(stream_id))[-1]["type"] == "done", ws.name
        assert len(messages_with(ws, "hello?")) == 1, ws.name
    stored = await history(b, tokens, bob_name, room_id)
    assert [m["content"] for m in stored if m["role"] == "user"] == ["hello?"]
    for ws in (alice, bob):
        await ws.close()


async def test_a_message_ends_its_authors_typing_on_every_node(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, bob_name, carol_name = names("alice", "bob", "carol")
    room_id = await make_room(a, tokens, alice_name, bob_name, carol_name)
    alice = await join(a, tokens, alice_name, room_id)  # another node than bob's
    carol = await join(b, tokens, carol_name, room_id)  # bob's node
    bob = await join(b, tokens, bob_name, room_id)
    await alice.expect({"type": "presence", "user": bob_name, "state": "joined"})
    await bob.send({"type": "typing", "room": room_id, "active": True})
    for ws in (alice, carol):
        await ws.expect({"type": "typing", "user": bob_name, "active": True})
    await bob.send({"type": "chat.send", "room": room_id, "ref": "t", "content": "done typing"})
    sent = time.monotonic()
    for ws in (alice, carol):
        # TYPING_TTL_S is 30 s: only the message can have ended it
        await ws.expect({"type": "typing", "user": bob_name, "active": False}, within=5)
        assert time.monotonic() - sent < 5, ws.name
        await ws.expect({"type": "message", "user": bob_name, "content": "done typing"})
    for ws in (alice, bob, carol):
        await ws.close()


async def test_rooms_per_user_are_limited_across_nodes(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    (dave,) = names("dave")
    for node in (a, b, a):  # ROOM_MAX_ROOMS_PER_USER=3, counted cluster-wide
        created = await post(node, "/stream/v1/rooms", bearer(tokens, dave))
        assert created.status_code == 201, created.text
    refused = await post(b, "/stream/v1/rooms", bearer(tokens, dave))
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "too_many_rooms" and error["type"] and error["message"]
    # another user is not affected
    assert (await post(b, "/stream/v1/rooms", bearer(tokens, dave + "-2"))).status_code == 201


async def test_rooms_per_socket_are_limited(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    erin_name, frank_name = names("erin", "frank")
    rooms = [await make_room(a, tokens, erin_name) for _ in range(2)]
    rooms.append(await make_room(a, tokens, frank_name, erin_name))
    erin = await open_ws(a, tokens, erin_name)
    for room_id in rooms[:2]:  # ROOM_MAX_JOINED_PER_SOCKET=2
        await erin.send({"type": "join", "room": room_id})
        await erin.expect({"type": "joined", "room": room_id})
    await erin.send({"type": "join", "room": rooms[2], "ref": "j3"})
    refused = await erin.expect({"type": "error", "ref": "j3"})
    assert refused["code"] == "too_many_joined_rooms" and refused["message"]
    await erin.send({"type": "join", "room": rooms[0]})  # joining one it is in: fine
    await erin.expect({"type": "joined", "room": rooms[0]})
    await erin.send({"type": "leave", "room": rooms[1]})
    await erin.send({"type": "join", "room": rooms[2]})
    await erin.expect({"type": "joined", "room": rooms[2]})
    other = await open_ws(a, tokens, erin_name)  # the limit is per socket, not per user
    await other.send({"type": "join", "room": rooms[1]})
    await other.expect({"type": "joined", "room": rooms[1]})
    for ws in (erin, other):
        await ws.close()


async def test_a_reply_longer_than_a_message_is_kept_whole_in_parts(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    """ROOM_MAX_MESSAGE_BYTES is 100 here and a reply ~280 bytes: it becomes consecutive
    messages (part 1..n of its stream) that give back the streamed text, in `joined` for a
    newcomer, and the next reply reads it whole (the local model's text is a function of
    the conversation it was sent)."""
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id = await make_room(a, tokens, alice_name, bob_name)
    alice = await join(a, tokens, alice_name, room_id)
    bob = await join(b, tokens, bob_name, room_id)
    await alice.send({"type": "chat.send", "room": room_id, "ref": "q", "content": "tell me"})
    stream_id = (await alice.expect({"type": "stream.created", "ref": "q"}))["stream_id"]
    text = text_of(await bob.stream(stream_id))
    assert len(text.encode()) > 2 * MAX_MESSAGE_BYTES

    def reply_parts(frames: list[dict[str, Any]], sid: str) -> list[dict[str, Any]]:
        return [f for f in frames if f.get("role") == "assistant" and f.get("stream_id") == sid]

    for ws in (alice, bob):
        last = await ws.expect(lambda f, ws=ws: f["type"] == "message"
                               and f.get("stream_id") == stream_id
                               and f.get("part") == f.get("parts"), within=10)  # fmt: skip
        parts = reply_parts(ws.frames, stream_id)
        assert [p["part"] for p in parts] == list(range(1, last["parts"] + 1)), ws.name
        assert "".join(p["content"] for p in parts) == text, ws.name
        assert all(len(p["content"].encode()) <= MAX_MESSAGE_BYTES for p in parts)
    stored = await history(b, tokens, bob_name, room_id)
    assert "".join(p["content"] for p in reply_parts(stored, stream_id)) == text

    # the next reply reads the whole conversation: the long reply as one assistant message
    await bob.send({"type": "chat.send", "room": room_id, "ref": "n", "content": "and then?"})
    next_id = (await bob.expect({"type": "stream.created", "ref": "n"}))["stream_id"]
    next_text = text_of(await alice.stream(next_id))
    conversation = [
        RoomMessage("m1", 1, alice_name, "user", "tell me", 0),
        RoomMessage("m2", 2, "assistant", "assistant", text, 0, stream_id),
        RoomMessage("m3", 3, bob_name, "user", "and then?", 0),
    ]
    request = ChatCompletionRequest(model=MODEL, messages=as_chat_messages(conversation))
    assert next_text == "".join(script_reply(request)[0])
    for ws in (alice, bob):
        await ws.close()
