"""Property-based fuzzing of ``/stream/v1/ws`` frames (issue 18), as the SSE resume inputs
are fuzzed in tests/integration/api/test_fuzz.py: any JSON, any bytes, and any order of
``resume`` / ``cancel`` / ``join`` / ``leave`` / ``typing`` / ``chat.send`` / ``ping`` over
real and made-up ids, on a real node (moto DynamoDB, redis-server bus). Whatever comes,
the socket keeps answering (no handler death), never gets another user's stream, and once
it closes no reader seat is left; when the streams end every slot is free again."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.auth.dev import DevTokens
from tests.integration.ws.conftest import bearer, chat_request, open_ws, post
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

USER = "ws-fuzzer"
OTHER = "ws-fuzz-other"
STREAM_LIMIT = 3


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes(
        {
            **node_env,
            "WS_MESSAGES_PER_S": "1000",  # the fuzzer is not a flood
            "WS_MESSAGE_BURST": "1000",
            "MAX_STREAMS_PER_USER": str(STREAM_LIMIT),
            "LOCAL_TOKEN_DELAY_MS": "5",
        }
    )


@pytest.fixture(scope="module")
def node(nodes: Nodes) -> ProcessServer:
    return nodes.start(NODE_ID="fuzz-a")


@pytest.fixture(scope="module")
def targets(node: ProcessServer, tokens: DevTokens) -> dict[str, list[str]]:
    """Ids to aim at: the user's own streams (one running long, one finished), another
    user's, made-up ones; the user's room and someone else's."""
    own = []
    for prompt in ("/tokens 100000", "/tokens 3"):
        created = httpx.post(
            node.url + "/stream/v1/streams",
            json=chat_request(prompt),
            headers=bearer(tokens, USER),
            timeout=10,
        )
        assert created.status_code == 201, created.text
        own.append(created.json()["id"])
    foreign = httpx.post(
        node.url + "/stream/v1/streams",
        json=chat_request("/tokens 100000"),
        headers=bearer(tokens, OTHER),
        timeout=10,
    ).json()["id"]
    rooms = []
    for user in (USER, OTHER):
        room = httpx.post(node.url + "/stream/v1/rooms", headers=bearer(tokens, user), timeout=10)
        assert room.status_code == 201, room.text
        rooms.append(room.json()["id"])
    made_up = [f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}", "0" * 32, "s" * 300]
    return {"streams": [*own, foreign, *made_up], "rooms": [*rooms, "r", ""], "foreign": [foreign]}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KINDS = ["resume", "cancel", "join", "leave", "typing", "chat.send", "ping"]


@st.composite
def structured(draw: st.DrawFn, stream_ids: list[str], rooms: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    frame: dict[str, Any] = {"type": kind}
    if kind in ("resume", "cancel"):
        frame["stream_id"] = draw(st.sampled_from(stream_ids) | st.text(max_size=40))
        if kind == "resume" and draw(st.booleans()):
            frame["after_seq"] = draw(st.integers(min_value=-3, max_value=200) | JSON)
    elif kind in ("join", "leave", "typing"):
        frame["room"] = draw(st.sampled_from(rooms) | st.text(max_size=10))
        if kind == "typing":
            frame["active"] = draw(st.booleans() | JSON)
    elif kind == "chat.send":
        frame.update(chat_request(draw(st.sampled_from(["/tokens 2", "/tokens 5", "hi"]))))
    if draw(st.booleans()):
        frame["ref"] = draw(st.text(max_size=12) | JSON)
    if draw(st.integers(0, 9)) == 0:
        frame[draw(st.text(max_size=6))] = draw(JSON)  # an unknown field
    return frame


def frames_of(targets: dict[str, list[str]]) -> st.SearchStrategy[list[str | bytes]]:
    one = st.one_of(
        structured(targets["streams"], targets["rooms"]).map(json.dumps),
        structured(targets["streams"], targets["rooms"]).map(lambda f: json.dumps(f).encode()),
        JSON.map(json.dumps),
        st.binary(max_size=64),
        st.text(max_size=64),
        st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    )
    return st.lists(one, min_size=1, max_size=16)


def open_readers(node: ProcessServer) -> float:
    text = httpx.get(node.url + "/stream/metrics", timeout=5).text
    found = re.search(r"^rtai_stream_open_readers (\S+)$", text, re.M)
    assert found, "no open readers gauge"
    return float(found.group(1))


async def _exchange(
    node: ProcessServer, tokens: DevTokens, frames: list[str | bytes], foreign: list[str]
) -> None:
    ws = await open_ws(node, tokens, USER)
    try:
        for frame in frames:
            await ws.send(frame)
        await ws.send({"type": "ping", "ref": "last"})
        await ws.expect({"type": "pong"}, within=20)  # still answering, in order
        assert ws.close_code is None, ws.frames[-3:]
        for frame in ws.frames:
            assert isinstance(frame.get("type"), str), frame
            if frame["type"] == "error":
                assert isinstance(frame["code"], str) and isinstance(frame["message"], str)
                assert frame["code"] != "internal_error", frame  # nothing failed unexpectedly
            if "seq" in frame:
                assert frame["stream_id"] not in foreign, frame  # never another user's
    finally:
        await ws.close()
    deadline = time.monotonic() + 15
    while (readers := await asyncio.to_thread(open_readers, node)) != 0:
        assert time.monotonic() < deadline, f"{readers} reader seats left after the socket closed"
        await asyncio.sleep(0.1)


@given(data=st.data())
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_any_frames_in_any_order_leave_the_socket_answering_and_no_seat_behind(
    node: ProcessServer, tokens: DevTokens, targets: dict[str, list[str]], data: st.DataObject
) -> None:
    frames = data.draw(frames_of(targets))
    asyncio.run(_exchange(node, tokens, frames, targets["foreign"]))


def test_after_the_fuzzing_every_slot_is_free_again(
    node: ProcessServer, tokens: DevTokens, targets: dict[str, list[str]]
) -> None:
    headers = bearer(tokens, USER)
    for stream_id in targets["streams"][:2]:
        httpx.post(f"{node.url}/stream/v1/streams/{stream_id}/cancel", headers=headers)

    async def fill_the_limit() -> list[int]:
        results = await asyncio.gather(
            *(
                post(node, "/stream/v1/streams", headers, chat_request("/tokens 2"))
                for _ in range(STREAM_LIMIT)
            )
        )
        return [r.status_code for r in results]

    deadline = time.monotonic() + 20
    while (codes := asyncio.run(fill_the_limit())) != [201] * STREAM_LIMIT:
        # streams the fuzzer started may still be finishing
        assert time.monotonic() < deadline, codes
        time.sleep(0.5)
