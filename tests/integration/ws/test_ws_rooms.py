"""Rooms over WebSocket end to end on two nodes sharing one moto DynamoDB server and one
real redis-server (SPEC section 6): members on different nodes see each other's
presence, typing and messages, and every assistant reply live with the same seqs; the
conversation is stored (rejoin, join mid-reply and resume by seq); presence is one member
per user whatever the connections, and a killed node's members leave."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.auth.dev import DevTokens
from tests.integration.ws.conftest import WsClient, bearer, open_ws, post, seqs, sse, text_of
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

# the local model's default reply in a room is 48 tokens: ~2 s at this pace
ROOM_ENV = {"LOCAL_TOKEN_DELAY_MS": "40"}


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes({**node_env, **ROOM_ENV})


@pytest.fixture(scope="module")
def cluster(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("rooms-a", "rooms-b")


def names(*who: str) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"{name}-{tag}" for name in who]


async def make_room(node: ProcessServer, tokens: DevTokens, owner: str, *members: str) -> str:
    created = await post(node, "/stream/v1/rooms", bearer(tokens, owner))
    assert created.status_code == 201, created.text
    room_id: str = created.json()["id"]
    for member in members:
        added = await post(node, f"/stream/v1/rooms/{room_id}/members", bearer(tokens, owner),
                           {"user": member})  # fmt: skip
        assert added.status_code in (200, 201), added.text
    return room_id


async def join(node: ProcessServer, tokens: DevTokens, user: str, room_id: str) -> WsClient:
    ws = await open_ws(node, tokens, user)
    await ws.send({"type": "join", "room": room_id})
    await ws.expect({"type": "joined", "room": room_id})
    return ws


def joined(ws: WsClient) -> dict[str, Any]:
    return [f for f in ws.frames if f["type"] == "joined"][-1]


def reply_frames(ws: WsClient, stream_id: str) -> list[dict[str, Any]]:
    return [f for f in ws.of(stream_id) if f["type"] in ("status", "delta", "done", "error")]


async def test_a_room_conversation_across_two_nodes(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, bob_name, carol_name = names("alice", "bob", "carol")
    room_id = await make_room(a, tokens, alice_name, bob_name)

    alice = await join(a, tokens, alice_name, room_id)
    assert joined(alice) == {"type": "joined", "room": room_id, "members": [alice_name],
                             "messages": [], "streams": []}  # fmt: skip
    bob = await join(b, tokens, bob_name, room_id)
    assert joined(bob)["members"] == sorted([alice_name, bob_name])  # alice is on node a
    await alice.expect({"type": "presence", "room": room_id, "user": bob_name,
                        "state": "joined"})  # fmt: skip

    # typing: seen on the other node, then expires by itself after TYPING_TTL_S (1 s)
    await bob.send({"type": "typing", "room": room_id, "active": True})
    await alice.expect({"type": "typing", "room": room_id, "user": bob_name, "active": True})
    since = time.monotonic()
    await alice.expect({"type": "typing", "user": bob_name, "active": False}, within=5)
    assert 0.5 <= time.monotonic() - since <= 3.0
    assert not [f for f in bob.frames if f["type"] == "typing"]  # not echoed to the typist

    # alice's message and the assistant's reply, live on both nodes
    await alice.send({"type": "chat.send", "room": room_id, "ref": "m1", "content": "hello all"})
    created = await alice.expect({"type": "stream.created", "ref": "m1"})
    assert created["room"] == room_id
    stream_id = created["stream_id"]
    for ws in (alice, bob):
        message = await ws.expect({"type": "message", "role": "user"})
        assert message["user"] == alice_name and message["content"] == "hello all"
        assert message["room"] == room_id and message["id"]
    answers = []
    for ws in (alice, bob):
        answers.append(await ws.expect({"type": "message", "role": "assistant"}, within=15))
        frames = reply_frames(ws, stream_id)
        assert seqs(frames) == list(range(1, len(frames) + 1)), ws.name
        assert frames[0]["type"] == "status" and frames[-1]["type"] == "done"
        assert {f["type"] for f in frames[1:-1]} <= {"status", "delta"}
        # the assistant's message comes after the reply's last event
        assert ws.frames.index(answers[-1]) > ws.frames.index(frames[-1])
    assert reply_frames(alice, stream_id) == reply_frames(bob, stream_id)
    text = text_of(reply_frames(alice, stream_id))
    assert answers[0] == answers[1]
    assert answers[0]["user"] == "assistant" and answers[0]["content"] == text

    # members read the reply over SSE too (same ids); a non-member gets 404
    over_sse = await sse(b, f"/stream/v1/streams/{stream_id}/events",
                         headers=bearer(tokens, bob_name))  # fmt: skip
    assert over_sse.status == 200 and over_sse.ids == seqs(reply_frames(bob, stream_id))
    assert over_sse.text == text
    outsider = await sse(a, f"/stream/v1/streams/{stream_id}/events",
                         headers=bearer(tokens, carol_name))  # fmt: skip
    assert outsider.status == 404

    # bob goes; alice sees him leave; he rejoins on the other node and gets it all
    await bob.close()
    await alice.expect({"type": "presence", "user": bob_name, "state": "left"}, within=5)
    again = await join(a, tokens, bob_name, room_id)
    history = joined(again)["messages"]
    assert [(m["user"], m["role"], m["content"]) for m in history] == [
        (alice_name, "user", "hello all"),
        ("assistant", "assistant", text),
    ]
    assert [m["id"] for m in history] == [
        next(f for f in alice.frames if f["type"] == "message" and f["role"] == r)["id"]
        for r in ("user", "assistant")
    ]
    assert joined(again)["streams"] == []
    for ws in (alice, again):
        await ws.close()


async def test_a_member_joining_mid_reply_gets_it_and_resumes_by_seq(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, dave_name, erin_name = names("alice", "dave", "erin")
    room_id = await make_room(a, tokens, alice_name, dave_name, erin_name)
    alice = await join(a, tokens, alice_name, room_id)
    await alice.send({"type": "chat.send", "room": room_id, "ref": "q", "content": "tell me"})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]
    for _ in range(4):
        await alice.expect({"type": "delta", "stream_id": stream_id})

    dave = await join(b, tokens, dave_name, room_id)
    erin = await join(b, tokens, erin_name, room_id)  # she does not resume
    snapshot = joined(dave)
    assert [(m["user"], m["content"]) for m in snapshot["messages"]] == [(alice_name, "tell me")]
    assert [s["stream_id"] for s in snapshot["streams"]] == [stream_id]
    last_seq = snapshot["streams"][0]["last_seq"]
    assert last_seq >= 1  # what the store had (another node produces it)
    live = [f for f in dave.frames if f.get("stream_id") == stream_id]
    assert all(f["seq"] > last_seq for f in live)  # live frames start after the snapshot

    await dave.send({"type": "resume", "stream_id": stream_id, "after_seq": 0})
    await dave.stream(stream_id)  # (read from the store: it may end after the message)
    await dave.expect({"type": "message", "role": "assistant"}, within=15)
    frames = reply_frames(dave, stream_id)
    assert sorted({f["seq"] for f in frames}) == list(range(1, frames[-1]["seq"] + 1))
    whole = reply_frames(alice, stream_id)
    by_seq = {f["seq"]: f for f in frames}
    assert [by_seq.get(f["seq"]) for f in whole] == whole
    assert max(by_seq) == whole[-1]["seq"]

    # without a resume: everything after her snapshot's last_seq, in order, no gap (the
    # snapshot may trail the live reply: the gap is filled from the store)
    after = joined(erin)["streams"][0]["last_seq"]
    tail = await erin.stream(stream_id)
    assert seqs(tail) == list(range(after + 1, whole[-1]["seq"] + 1))
    assert tail == whole[after:]
    for ws in (alice, dave, erin):
        await ws.close()


async def test_members_cancel_room_replies_and_others_cannot(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, bob_name, carol_name = names("alice", "bob", "carol")
    room_id = await make_room(a, tokens, alice_name, bob_name)
    alice = await join(a, tokens, alice_name, room_id)
    bob = await join(b, tokens, bob_name, room_id)
    carol = await open_ws(b, tokens, carol_name)

    await alice.send({"type": "chat.send", "room": room_id, "ref": "q", "content": "long one"})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]
    await bob.expect({"type": "delta", "stream_id": stream_id})

    # (a foreign id answers as late as an unknown one: RECORD_WAIT_S; meanwhile bob cancels)
    await carol.send({"type": "cancel", "stream_id": stream_id})
    await carol.send({"type": "resume", "stream_id": stream_id, "after_seq": 0})
    await bob.send({"type": "cancel", "stream_id": stream_id})  # bob did not start it
    for ws in (alice, bob):
        done = await ws.expect({"type": "done", "stream_id": stream_id}, within=5)
        assert done["finish_reason"] == "cancelled"
    assert (await carol.expect({"type": "error"}, within=10))["code"] == "stream_not_found"
    assert (await carol.expect({"type": "error"}, within=10))["code"] == "stream_not_found"
    assert not [f for f in carol.frames if f.get("stream_id") == stream_id and "seq" in f]
    for ws in (alice, bob, carol):
        await ws.close()


async def test_presence_is_one_member_per_user_whatever_the_connections(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, bob_name = names("alice", "bob")
    room_id = await make_room(a, tokens, alice_name, bob_name)
    alice = await join(a, tokens, alice_name, room_id)
    bob_b1 = await join(b, tokens, bob_name, room_id)
    await alice.expect({"type": "presence", "user": bob_name, "state": "joined"})
    bob_b2 = await join(b, tokens, bob_name, room_id)
    bob_a = await join(a, tokens, bob_name, room_id)
    assert joined(bob_a)["members"] == sorted([alice_name, bob_name])  # once, not three times

    await bob_b1.close()  # bob is still here twice
    await bob_a.send({"type": "leave", "room": room_id})  # and still on node b
    await asyncio.sleep(2.5)  # > PRESENCE_TTL_S: an entry not renewed would have lapsed
    about_bob = [f for f in alice.frames if f["type"] == "presence" and f["user"] == bob_name]
    assert [f["state"] for f in about_bob] == ["joined"]

    await bob_b2.close()  # the last connection
    since = time.monotonic()
    await alice.expect({"type": "presence", "user": bob_name, "state": "left"}, within=5)
    assert time.monotonic() - since < 3.0
    for ws in (alice, bob_a):
        await ws.close()


async def test_members_of_a_killed_node_leave_within_seconds(
    nodes: Nodes, cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    doomed = nodes.start(NODE_ID="rooms-doomed")
    alice_name, bob_name = names("alice", "bob")
    room_id = await make_room(a, tokens, alice_name, bob_name)
    alice = await join(a, tokens, alice_name, room_id)
    bob = await join(doomed, tokens, bob_name, room_id)
    await alice.expect({"type": "presence", "user": bob_name, "state": "joined"})
    await bob.send({"type": "typing", "room": room_id, "active": True})
    await alice.expect({"type": "typing", "user": bob_name, "active": True})

    nodes.kill(doomed)  # kill -9: no goodbye on the bus
    since = time.monotonic()
    await alice.expect({"type": "presence", "user": bob_name, "state": "left"}, within=8)
    assert time.monotonic() - since < 4.0  # PRESENCE_TTL_S=1.5 plus the sweep
    # the room goes on for those still there
    await alice.send({"type": "ping"})
    await alice.expect({"type": "pong"})
    await alice.close()
