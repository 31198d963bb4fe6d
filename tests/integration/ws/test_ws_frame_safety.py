"""No frame, and no order of frames, breaks a socket (issue 18, SPEC section 6): two
``resume`` frames back to back leak no reader seat; a frame that cannot be decoded (5,000
nested arrays, invalid UTF-8) is an ``invalid_message`` and the socket goes on answering;
a ``resume`` on another node in a stream's first moments waits for its record as SSE does.
Real nodes (``python -m stream_service``), one moto DynamoDB server, redis-server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from core.auth.dev import DevTokens
from devstack.local_aws import LocalAws
from tests.integration.ws.conftest import WsClient, bearer, chat_request, open_ws, post, seqs
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer, wait_http

pytestmark = pytest.mark.slow

READERS_PER_STREAM = 3


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes(
        {
            **node_env,
            "MAX_READERS_PER_STREAM": str(READERS_PER_STREAM),
            "MAX_STREAMS_PER_USER": "4",
            "LOCAL_TOKEN_DELAY_MS": "20",
        }
    )


@pytest.fixture(scope="module")
def pair(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("safe-a", "safe-b")


def open_readers(node: ProcessServer) -> float:
    """The node's open readers (SSE connections and WebSocket subscriptions)."""
    text = httpx.get(node.url + "/stream/metrics", timeout=5).text
    found = re.search(r"^rtai_stream_open_readers (\S+)$", text, re.M)
    assert found, "no open readers gauge"
    return float(found.group(1))


async def until_readers(node: ProcessServer, expected: float, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (seen := await asyncio.to_thread(open_readers, node)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{seen} open readers"
        await asyncio.sleep(0.1)


async def start_long_stream(node: ProcessServer, tokens: DevTokens, user: str) -> str:
    created = await post(
        node, "/stream/v1/streams", bearer(tokens, user), chat_request("/tokens 3000")
    )
    assert created.status_code == 201, created.text
    stream_id: str = created.json()["id"]
    return stream_id


async def test_back_to_back_resumes_leak_no_reader_seat(
    pair: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = pair
    stream_id = await start_long_stream(a, tokens, "seats")
    ws = await open_ws(b, tokens, "seats")
    try:
        for _ in range(4 * READERS_PER_STREAM):
            # two resumes in one go: the second replaces the first before its pump ran
            frame = {"type": "resume", "stream_id": stream_id, "after_seq": 0}
            await ws.send(frame)
            await ws.send(frame)
            await asyncio.sleep(0.05)
        await ws.send({"type": "ping"})
        await ws.expect({"type": "pong"})
        refused = [f for f in ws.frames if f.get("code") == "too_many_readers"]
        assert not refused, refused[:1]
        await until_readers(b, 1)  # the last resume's reader, nothing more
    finally:
        await ws.close()
    await until_readers(b, 0)
    # every seat is free again: as many readers as the limit allows, on new sockets
    readers = [await open_ws(b, tokens, "seats") for _ in range(READERS_PER_STREAM)]
    try:
        for reader in readers:
            await reader.send({"type": "resume", "stream_id": stream_id, "after_seq": 0})
        for reader in readers:
            first = await reader.expect({"stream_id": stream_id}, within=10)
            assert first["type"] != "error", first
    finally:
        for reader in readers:
            await reader.close()
        await post(a, f"/stream/v1/streams/{stream_id}/cancel", bearer(tokens, "seats"))


UNDECODABLE = [
    "[" * 5000 + "]" * 5000,  # RecursionError in the JSON decoder
    '{"type": "ping", "deep": ' + "[" * 5000 + "]" * 5000 + "}",
    b"\xff\xfe\xfd invalid utf-8",  # a binary frame: UnicodeDecodeError
    b'{"type": "ping", "x": "\xc3\x28"}',
    '{"type": "resume", "stream_id": ' + "{" * 3000 + "}" * 3000 + "}",
]


async def test_undecodable_frames_are_invalid_message_and_the_socket_keeps_answering(
    pair: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = pair
    ws = await open_ws(a, tokens, "decoder")
    try:
        for index, frame in enumerate(UNDECODABLE):
            await ws.send(frame)
            error = await ws.expect({"type": "error"}, within=5)
            assert error["code"] == "invalid_message", (index, error)
            await ws.send({"type": "ping", "ref": str(index)})
            await ws.expect({"type": "pong"}, within=5)
        # and still a whole stream
        await ws.send({"type": "chat.send", "ref": "after", **chat_request("/tokens 4")})
        stream_id = (await ws.expect({"type": "stream.created", "ref": "after"}))["stream_id"]
        frames = await ws.stream(stream_id)
        assert frames[-1]["type"] == "done"
    finally:
        await ws.close()


async def test_a_resume_on_another_node_at_once_waits_for_the_record(
    nodes: Nodes, pair: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    """The create answers before the record is stored: a resume sent to the other node
    the moment the id is known gets the stream (from its first event), not a 404. (One
    store writer, busy with other streams' first writes: the record comes late.)"""
    busy = nodes.start(NODE_ID="safe-busy", FLUSH_CONCURRENCY="1")
    _, b = pair
    ws_b: WsClient = await open_ws(b, tokens, "early")
    try:
        async with httpx.AsyncClient(timeout=20) as client:
            for attempt in range(3):
                others = [
                    client.post(
                        busy.url + "/stream/v1/streams",
                        json=chat_request("/tokens 3"),
                        headers=bearer(tokens, f"busy-{attempt}-{n}"),
                    )
                    for n in range(12)
                ]
                await asyncio.gather(*others)  # answered: their first writes are queued
                created = await client.post(
                    busy.url + "/stream/v1/streams",
                    json=chat_request("/tokens 5"),
                    headers=bearer(tokens, "early"),
                )
                stream_id = created.json()["id"]
                await ws_b.send({"type": "resume", "stream_id": stream_id, "after_seq": 0})
                first = await ws_b.expect({"stream_id": stream_id}, within=15)
                assert first["type"] != "error", first
                frames = await ws_b.stream(stream_id, within=15)
                assert frames[-1]["type"] == "done", frames[-1]
                assert seqs(frames) == list(range(1, len(frames) + 1))
    finally:
        await ws_b.close()


async def test_a_store_failure_inside_a_handler_is_answered_and_the_socket_goes_on(
    nodes: Nodes, tokens: DevTokens
) -> None:
    """The node's DynamoDB goes away: a ``resume`` that needs the store is answered with
    ``error`` ``internal_error`` (and logged), and the socket keeps answering."""
    aws = LocalAws.start()
    try:
        wait_http(aws.endpoint)
        node = nodes.start(NODE_ID="safe-storeless", DYNAMODB_ENDPOINT_URL=aws.endpoint)
        ws = await open_ws(node, tokens, "storeless")
        await ws.send({"type": "ping"})
        await ws.expect({"type": "pong"})
    finally:
        aws.stop()
    try:
        await ws.send({"type": "resume", "stream_id": "0" * 32, "ref": "needs-the-store"})
        error = await ws.expect({"type": "error", "ref": "needs-the-store"}, within=60)
        assert error["code"] == "internal_error", error
        await ws.send({"type": "ping", "ref": "after"})
        await ws.expect({"type": "pong"}, within=10)
        assert ws.close_code is None
    finally:
        await ws.close()
