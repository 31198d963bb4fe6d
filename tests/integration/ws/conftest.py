"""Real parts for the WebSocket half of issue 12: ``python -m stream_service`` nodes (the
local model, paced by env) on one moto DynamoDB server and one real ``redis-server`` as
the room bus (``BUS_URL``), driven with the ``websockets`` client, httpx and SSE."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.support.redis import RedisServer, redis_server_fixture
from tests.support.servers import ProcessServer, wait_http
from tests.support.sse import SseResult, read_sse

MODEL = "local-model"

# Small intervals so each test runs in seconds (every one is an env var of the node).
FAST_ENV = {
    "LLM_PROVIDER": "local",
    "LOCAL_TTFT_MS": "40",
    "LOCAL_TOKEN_DELAY_MS": "15",
    "KEEPALIVE_S": "1",
    "RESUME_GRACE_S": "5",
    "LEASE_TTL_S": "2",
    "POLL_INTERVAL_MS": "100",
    "DRAIN_S": "3",
    "MAX_STREAMS_PER_USER": "2",
    "STREAM_LIMIT_POLICY": "reject",
    "TYPING_TTL_S": "1",
    "PRESENCE_HEARTBEAT_S": "0.4",
    "PRESENCE_TTL_S": "1.5",
    "BUS_RECONNECT_MIN_S": "0.05",
    "BUS_RECONNECT_MAX_S": "0.5",
    "BUS_PING_S": "0.3",
}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


@pytest.fixture(scope="module")
def node_env(aws_env: dict[str, str], redis_server: RedisServer) -> dict[str, str]:
    # moto's threaded server may still be binding its port (a loaded machine): a node
    # that finds it closed exits on start
    wait_http(aws_env["DYNAMODB_ENDPOINT_URL"])
    return {
        **aws_env,
        **FAST_ENV,
        "STREAMS_TABLE": f"ws-{uuid.uuid4().hex[:8]}",
        "BUS_URL": f"redis://127.0.0.1:{redis_server.port}",
    }


@pytest.fixture(scope="module")
def tokens() -> DevTokens:
    return DevTokens(DEV_SECRET_DEFAULT, 3600)


def bearer(tokens: DevTokens, user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens.mint(user)}"}


def ws_url(node: ProcessServer, path: str = "/stream/v1/ws") -> str:
    return node.url.replace("http://", "ws://") + path


class WsClient:
    """A ``websockets`` connection that keeps every frame it received, in order.

    A background task reads all the time, as a real client does (the client library then
    answers the server's pings); ``reading=False`` leaves the reads to the test.
    """

    def __init__(self, conn: ClientConnection, name: str, *, reading: bool = True) -> None:
        self.conn = conn
        self.name = name
        self.frames: list[dict[str, Any]] = []
        self.at: list[float] = []  # when each frame arrived (background reads)
        self.close_code: int | None = None
        self._matched: set[int] = set()  # indexes of frames ``expect`` returned
        self._new = asyncio.Event()
        self._ended = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read_all()) if reading else None

    async def _read_all(self) -> None:
        try:
            async for raw in self.conn:
                self.frames.append(json.loads(raw))
                self.at.append(time.monotonic())
                self._new.set()
        except ConnectionClosed:
            pass
        finally:
            self._ended_with(self.conn.close_code)

    def _ended_with(self, code: int | None) -> None:
        self.close_code = code
        self._ended.set()
        self._new.set()

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        await self.conn.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        """One frame, read by the test (``reading=False``)."""
        assert self._reader is None, "frames are read in the background"
        raw = await asyncio.wait_for(self.conn.recv(), within)
        frame: dict[str, Any] = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def expect(
        self, match: dict[str, Any] | Callable[[dict[str, Any]], bool], within: float = 5.0
    ) -> dict[str, Any]:
        """The first frame received (and not returned before) that has ``match``'s fields,
        waiting up to ``within`` seconds for it."""

        def ok(frame: dict[str, Any]) -> bool:
            if callable(match):
                return match(frame)
            return all(frame.get(k) == v for k, v in match.items())

        deadline = time.monotonic() + within
        while True:
            for index, frame in enumerate(self.frames):
                if index not in self._matched and ok(frame):
                    self._matched.add(index)
                    return frame
            left = deadline - time.monotonic()
            if left <= 0 or self._ended.is_set():
                raise AssertionError(
                    f"{self.name}: no frame like {match!r} (closed: {self.close_code});"
                    f" got {self.frames!r}"
                )
            if self._reader is None:
                with contextlib.suppress(TimeoutError):
                    await self.recv(left)
                continue
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    async def stream(self, stream_id: str, within: float = 15.0) -> list[dict[str, Any]]:
        """Every frame of ``stream_id`` received, once its last one (``done`` / ``error``)
        is here (waiting up to ``within`` seconds for it)."""

        def last(frame: dict[str, Any]) -> bool:
            return (
                frame.get("stream_id") == stream_id
                and frame.get("type") in ("done", "error")
                and "seq" in frame
            )

        if not any(last(frame) for frame in self.frames):
            await self.expect(last, within)
        return self.of(stream_id)

    def of(self, stream_id: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("stream_id") == stream_id and "seq" in f]

    async def closed(self, within: float = 10.0) -> int | None:
        """Wait until the server closes; the close code it sent."""
        if self._reader is not None:
            await asyncio.wait_for(self._ended.wait(), within)
            return self.close_code
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.recv(within)
        except ConnectionClosed:
            self._ended_with(self.conn.close_code)
        return self.close_code

    async def close(self) -> None:
        await self.conn.close()
        if self._reader is not None:
            await self._reader


async def open_ws(
    node: ProcessServer, tokens: DevTokens | None, user: str = "alice", **options: Any
) -> WsClient:
    headers = bearer(tokens, user) if tokens is not None else {}
    conn = await connect(ws_url(node), additional_headers=headers, open_timeout=10, **options)
    return WsClient(conn, f"{user}@{node.port}")


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "delta")


def chat_request(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], **extra}


async def post(
    node: ProcessServer, path: str, headers: dict[str, str], body: Any = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(node.url + path, json=body, headers=headers)


async def sse(node: ProcessServer, path: str, **kwargs: Any) -> SseResult:
    """Read an SSE response in a thread (the event loop keeps answering pings)."""
    return await asyncio.to_thread(read_sse, node.url + path, **kwargs)
