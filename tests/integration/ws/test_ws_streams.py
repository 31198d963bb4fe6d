"""Private streams over WebSocket on two nodes (SPEC sections 5 and 6): one engine and one
store with SSE, so a stream started on one transport resumes on the other on any node
(``seq`` is the SSE ``id:``), per-user limits count both together, and a socket never
gets another user's stream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.auth.dev import DevTokens
from tests.integration.ws.conftest import bearer, chat_request, open_ws, post, seqs, sse, text_of
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer
from tests.support.sse import SseResult

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes(node_env)


@pytest.fixture(scope="module")
def cluster(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("streams-a", "streams-b")


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


def sse_frames(result: SseResult, stream_id: str) -> list[dict[str, Any]]:
    """SSE events as the WebSocket frames of the same stream would be."""
    return [
        {"type": e.event, "stream_id": stream_id, "seq": e.id, **e.json()} for e in result.events
    ]


async def full_stream(node: ProcessServer, headers: dict[str, str], stream_id: str) -> SseResult:
    """The whole stored stream, read over SSE from its first event."""
    result = await sse(node, f"/stream/v1/streams/{stream_id}/events", headers=headers)
    assert result.status == 200, result.body
    return result


async def test_ws_stream_resumes_over_sse_on_the_other_node(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    name = user()
    headers = bearer(tokens, name)
    ws = await open_ws(a, tokens, name)
    await ws.send({"type": "chat.send", "ref": "q1", **chat_request("/tokens 80")})
    created = await ws.expect({"type": "stream.created", "ref": "q1"})
    stream_id = created["stream_id"]
    await ws.expect({"type": "delta", "stream_id": stream_id})
    await ws.expect({"type": "delta", "stream_id": stream_id})
    await ws.close()  # the socket drops mid-reply
    seen = ws.of(stream_id)
    last = seen[-1]["seq"]
    assert seqs(seen) == list(range(1, last + 1))
    assert seen[-1]["type"] == "delta"

    rest = await sse(
        b, f"/stream/v1/streams/{stream_id}/events", headers={**headers, "last-event-id": str(last)}
    )
    assert rest.status == 200, rest.body
    assert rest.ids == list(range(last + 1, last + 1 + len(rest.ids)))  # no gap, no duplicate
    assert rest.events[-1].event == "done"
    assert rest.events[-1].json()["finish_reason"] == "stop"

    # the same events under the same numbers, whichever transport read them
    whole = sse_frames(await full_stream(b, headers, stream_id), stream_id)
    assert whole == seen + sse_frames(rest, stream_id)
    assert len(text_of(whole).split()) == 80


async def test_sse_stream_resumes_over_ws_on_the_other_node(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    name = user()
    headers = bearer(tokens, name)
    created = await post(a, "/stream/v1/streams", headers, chat_request("/tokens 80"))
    assert created.status_code == 201, created.text
    stream_id = created.json()["id"]
    first = await sse(a, created.json()["events_url"], stop_after_deltas=2)
    assert first.status == 200
    last = first.ids[-1]
    assert first.ids == list(range(1, last + 1))

    ws = await open_ws(b, tokens, name)
    await ws.send({"type": "resume", "stream_id": stream_id, "after_seq": last})
    rest = await ws.stream(stream_id)
    await ws.close()
    assert seqs(rest) == list(range(last + 1, rest[-1]["seq"] + 1))
    assert rest[-1]["type"] == "done" and rest[-1]["finish_reason"] == "stop"
    whole = sse_frames(await full_stream(a, headers, stream_id), stream_id)
    assert whole == sse_frames(first, stream_id) + rest


async def test_ws_resume_by_seq_on_the_other_node_after_a_drop(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    name = user()
    ws = await open_ws(a, tokens, name)
    await ws.send({"type": "chat.send", "ref": "q", **chat_request("/tokens 60")})
    stream_id = (await ws.expect({"type": "stream.created"}))["stream_id"]
    await ws.expect({"type": "delta", "stream_id": stream_id})
    await ws.close()
    seen = ws.of(stream_id)

    again = await open_ws(b, tokens, name)
    await again.send({"type": "resume", "stream_id": stream_id, "after_seq": seen[-1]["seq"]})
    rest = await again.stream(stream_id)
    await again.close()
    assert seqs(seen + rest) == list(range(1, rest[-1]["seq"] + 1))
    assert len(text_of(seen + rest).split()) == 60


async def test_per_user_limit_counts_sse_and_ws_streams_together(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster  # MAX_STREAMS_PER_USER=2
    name = user()
    headers = bearer(tokens, name)
    over_sse = await post(a, "/stream/v1/streams", headers, chat_request("/tokens 400"))
    assert over_sse.status_code == 201, over_sse.text
    ws = await open_ws(b, tokens, name)
    await ws.send({"type": "chat.send", "ref": "second", **chat_request("/tokens 400")})
    second = (await ws.expect({"type": "stream.created", "ref": "second"}))["stream_id"]

    # the third, over either transport, on either node, is refused
    await ws.send({"type": "chat.send", "ref": "third", **chat_request("/tokens 5")})
    refused = await ws.expect({"type": "error", "ref": "third"})
    assert refused["code"] == "too_many_streams"
    third_sse = await post(b, "/stream/v1/streams", headers, chat_request("/tokens 5"))
    assert third_sse.status_code == 429
    assert int(third_sse.headers["retry-after"]) >= 1
    assert third_sse.json()["error"]["code"] == "too_many_streams"
    ws_on_a = await open_ws(a, tokens, name)
    await ws_on_a.send({"type": "chat.send", "ref": "third-a", **chat_request("/tokens 5")})
    assert (await ws_on_a.expect({"type": "error", "ref": "third-a"}))["code"] == (
        "too_many_streams"
    )

    # another user is not affected
    other = await open_ws(a, tokens, user())
    await other.send({"type": "chat.send", "ref": "o", **chat_request("/tokens 3")})
    assert (await other.expect({"type": "stream.created", "ref": "o"}))["stream_id"]

    # cancelling the WebSocket one (over WebSocket) frees a slot for an SSE one
    await ws.send({"type": "cancel", "stream_id": second})
    frames = await ws.stream(second)
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "cancelled"
    again = await post(b, "/stream/v1/streams", headers, chat_request("/tokens 5"))
    assert again.status_code == 201, again.text
    cancel = await post(a, f"/stream/v1/streams/{over_sse.json()['id']}/cancel", headers)
    assert cancel.status_code == 200
    for socket in (ws, ws_on_a, other):
        await socket.close()


async def test_a_socket_never_gets_another_users_stream(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    alice_name, bob_name = user(), user()
    alice = await open_ws(a, tokens, alice_name)
    await alice.send({"type": "chat.send", "ref": "mine", **chat_request("/tokens 60")})
    stream_id = (await alice.expect({"type": "stream.created"}))["stream_id"]

    for node in (a, b):  # the producer's node and another
        bob = await open_ws(node, tokens, bob_name)
        await bob.send({"type": "resume", "stream_id": stream_id, "after_seq": 0, "ref": "r"})
        error = await bob.expect({"type": "error"})
        assert error["code"] == "stream_not_found"
        await bob.send({"type": "cancel", "stream_id": stream_id, "ref": "c"})
        assert (await bob.expect({"type": "error"}))["code"] == "stream_not_found"
        await bob.send({"type": "ping"})
        await bob.expect({"type": "pong"})
        assert not [f for f in bob.frames if f.get("type") in ("status", "delta", "done")]
        # nor over SSE
        sse_read = await sse(
            node, f"/stream/v1/streams/{stream_id}/events", headers=bearer(tokens, bob_name)
        )
        assert sse_read.status == 404
        await bob.close()

    frames = await alice.stream(stream_id)  # bob's cancel did nothing
    assert frames[-1]["type"] == "done" and frames[-1]["finish_reason"] == "stop"
    assert seqs(frames) == list(range(1, frames[-1]["seq"] + 1))
    await alice.close()


async def test_join_of_a_room_one_is_not_a_member_of_is_room_not_found(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    owner, stranger = user(), user()
    room = await post(a, "/stream/v1/rooms", bearer(tokens, owner))
    assert room.status_code == 201, room.text
    room_id = room.json()["id"]
    insider = await open_ws(a, tokens, owner)
    await insider.send({"type": "join", "room": room_id})
    await insider.expect({"type": "joined", "room": room_id})

    outsider = await open_ws(b, tokens, stranger)
    for target in (room_id, "rm_does-not-exist"):
        await outsider.send({"type": "join", "room": target, "ref": "j"})
        assert (await outsider.expect({"type": "error"}))["code"] == "room_not_found"
    await outsider.send({"type": "typing", "room": room_id, "active": True})
    assert (await outsider.expect({"type": "error"}))["code"] == "room_not_found"
    await outsider.send({"type": "chat.send", "room": room_id, "content": "let me in"})
    assert (await outsider.expect({"type": "error"}))["code"] == "room_not_found"

    # the member's traffic never reaches the outsider
    await insider.send({"type": "chat.send", "room": room_id, "content": "secret", "ref": "s"})
    reply = (await insider.expect({"type": "stream.created", "ref": "s"}))["stream_id"]
    await insider.stream(reply)
    await outsider.send({"type": "ping"})
    await outsider.expect({"type": "pong"})
    assert {f["type"] for f in outsider.frames} == {"error", "pong"}
    await insider.close()
    await outsider.close()
