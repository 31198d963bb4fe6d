"""Streams that end elsewhere than where they are read (issue 18, findings 3 and 6), on real
nodes sharing one moto DynamoDB server and an OpenAI-compatible upstream:

- ``STREAM_LIMIT_POLICY=replace`` cancels the replaced stream on whichever node runs it,
  whatever its id looks like;
- a stream declared lost while its node was frozen past ``LEASE_TTL_S`` ends the readers
  on that node with a terminal event: SSE ``error`` ``producer_lost``, in the openai
  format an error data line (never a clean end that looks like a complete reply), over
  WebSocket an ``error`` frame.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import StartNode, auth, create
from tests.integration.stream_service.engine_support import wait_for
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import SseResult, read_sse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.02, interval_s=0.02, default_tokens=20)
    with ThreadServer(app) as server:
        yield app, server


def _status(node: ProcessServer, stream_id: str, headers: dict[str, str]) -> str:
    response = httpx.get(f"{node.url}/stream/v1/streams/{stream_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def test_replace_cancels_the_replaced_stream_on_the_other_node_whatever_its_id(
    start_node: StartNode, tokens: DevTokens
) -> None:
    """One slot, two nodes, each create replacing the previous stream, which runs on the
    other node: every replaced stream ends cancelled (ids starting with ``c`` were once
    taken for non-streaming calls and never cancelled: 1 in 16)."""
    limits = {"STREAM_LIMIT_POLICY": "replace", "MAX_STREAMS_PER_USER": "1"}
    nodes = (start_node(NODE_ID="replace-a", **limits), start_node(NODE_ID="replace-b", **limits))
    headers = auth(tokens, "replacer")
    ids: list[str] = []
    for n in range(48):
        created = create(nodes[n % 2], headers, tokens_out=5000)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    try:
        for index, stream_id in enumerate(ids[:-1]):
            node = nodes[index % 2]
            wait_for(
                lambda: _status(node, stream_id, headers) == "cancelled",  # noqa: B023
                10,
                f"replaced stream {index} ({stream_id}) cancelled",
            )
    finally:
        httpx.post(f"{nodes[1].url}/stream/v1/streams/{ids[-1]}/cancel", headers=headers)


def _read_ws(url: str, token: str, stream_id: str, into: list[dict[str, Any]]) -> None:
    async def run() -> None:
        headers = {"authorization": f"Bearer {token}"}
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "resume", "stream_id": stream_id, "after_seq": 0}))
            async with asyncio.timeout(40):
                async for raw in ws:
                    frame = json.loads(raw)
                    into.append(frame)
                    if frame.get("type") in ("done", "error") and "seq" in frame:
                        return

    asyncio.run(run())


def test_a_stream_declared_lost_ends_its_local_readers_with_an_error(
    start_node: StartNode, tokens: DevTokens
) -> None:
    frozen = start_node(NODE_ID="frozen")
    other = start_node(NODE_ID="witness")
    user = "lost-reader"
    headers = auth(tokens, user)
    created = create(frozen, headers, tokens_out=4000).json()
    stream_id = created["id"]
    results: dict[str, SseResult] = {}
    ws_frames: list[dict[str, Any]] = []

    def sse(name: str, query: str) -> None:
        url = f"{frozen.url}/stream/v1/streams/{stream_id}/events{query}"
        results[name] = read_sse(url, headers=headers, timeout=40)

    readers = [
        threading.Thread(target=sse, args=("native", "")),
        threading.Thread(target=sse, args=("openai", "?format=openai")),
        threading.Thread(
            target=_read_ws,
            args=(
                frozen.url.replace("http://", "ws://") + "/stream/v1/ws",
                tokens.mint(user),
                stream_id,
                ws_frames,
            ),
        ),
    ]
    for reader in readers:
        reader.start()
    time.sleep(1.0)  # every reader is reading, the record and first events are stored
    frozen.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: _status(other, stream_id, headers) == "failed", 15, "declared lost")
    finally:
        frozen.signal(signal.SIGCONT)
    for reader in readers:
        reader.join(45)
        assert not reader.is_alive(), "a reader of the lost stream never ended"

    native = results["native"]
    assert native.status == 200
    assert native.last().event == "error", native.events[-3:]
    assert native.last().json()["code"] == "producer_lost"
    assert native.last().json()["retryable"] is True

    chunks = results["openai"]
    assert chunks.status == 200
    last = json.loads(chunks.last().data)
    assert last["error"]["code"] == "producer_lost", chunks.events[-3:]
    assert all(e.data != "[DONE]" for e in chunks.events)

    assert ws_frames, "the WebSocket reader got nothing"
    assert ws_frames[-1]["type"] == "error", ws_frames[-3:]
    assert ws_frames[-1]["code"] == "producer_lost"
    assert ws_frames[-1]["stream_id"] == stream_id
