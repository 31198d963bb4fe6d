"""SIGTERM with WebSockets open: every socket is closed with 1012 (reconnect, resume by
``seq``) while the stream a client was reading goes on; on another node the client resumes
it by ``seq`` and gets the rest, no gap, no duplicate."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.auth.dev import DevTokens
from tests.integration.ws.conftest import bearer, ws_url
from tests.support.nodes import Nodes, start_nodes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def drain_nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes({**node_env, "DRAIN_S": "8"})


async def test_a_draining_node_closes_its_sockets_with_1012_and_the_stream_resumes_elsewhere(
    drain_nodes: Nodes, tokens: DevTokens
) -> None:
    a, b = drain_nodes.pair("drain-a", "drain-b")
    headers = bearer(tokens, "drainer")
    seqs: list[int] = []
    async with (
        connect(ws_url(a), additional_headers=headers) as idle,
        connect(ws_url(a), additional_headers=headers) as ws,
    ):
        send = {
            "type": "chat.send",
            "model": "local-model",
            "messages": [{"role": "user", "content": "/tokens 120"}],
        }
        await ws.send(json.dumps(send))
        stream_id = None
        while len(seqs) < 5:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "stream.created":
                stream_id = frame["stream_id"]
            elif "seq" in frame:
                seqs.append(frame["seq"])
        a.signal(signal.SIGTERM)
        codes = []
        for conn in (ws, idle):
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(conn.recv(), 10))
                    if conn is ws and "seq" in frame:
                        seqs.append(frame["seq"])
            except ConnectionClosed:
                codes.append(conn.close_code)
        assert codes == [1012, 1012]  # even the socket that read nothing
    assert stream_id is not None
    async with connect(ws_url(b), additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "resume", "stream_id": stream_id, "after_seq": seqs[-1]}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if frame.get("stream_id") == stream_id and "seq" in frame:
                seqs.append(frame["seq"])
                if frame["type"] in ("done", "error"):
                    break
    assert seqs == list(range(1, len(seqs) + 1))
    assert frame["type"] == "done" and frame["finish_reason"] == "stop"
    a.wait(20)
