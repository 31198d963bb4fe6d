"""The engine on the in-memory store: ordering, typing latency, keepalive, slow readers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import pytest

from core.providers.local import LocalProvider, script_reply
from core.schemas.chat import ChatCompletionRequest, ChatMessage
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import StreamEngine
from stream_service.store.memory import MemoryStore
from stream_service.transports.outlet import Outlet
from stream_service.transports.sse import EventStream, sse_body
from stream_service.transports.sse.formats import native


def _request(prompt: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="local-model", messages=[ChatMessage(role="user", content=prompt)]
    )


async def _engine(ttft_s: float = 0.0, delay_s: float = 0.0, **config: object) -> StreamEngine:
    settings = Settings(keepalive_s=0.1, resume_grace_s=30)
    cfg = StreamSettings(node_id="n1", flush_interval_ms=100, flush_max_events=8, **config)  # type: ignore[arg-type]
    engine = StreamEngine(
        settings, cfg, MemoryStore(max_batch=8), LocalProvider(["local-model"], ttft_s, delay_s)
    )
    await engine.start()
    return engine


def _frames(raw: bytes) -> list[tuple[int, str]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        lines = dict(
            line.split(": ", 1)
            for line in frame.split("\n")
            if ": " in line and not line.startswith(":")
        )
        if "id" in lines:
            out.append((int(lines["id"]), lines["event"]))
    return out


async def _drain(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in body])


async def _body(engine: StreamEngine, stream_id: str, after: int = 0) -> AsyncIterator[bytes]:
    """The native SSE body of a reader, as the controller serves it (without a Sink)."""
    return sse_body(await engine.open("u", stream_id, after, native), 1000)


async def test_status_event_comes_within_100_ms() -> None:
    engine = await _engine(ttft_s=1.0)
    try:
        start = time.perf_counter()
        stream = await engine.create("u", _request("hello"), start)
        body = await _body(engine, stream.id, 0)
        first = b""
        async for chunk in body:
            first += chunk
            if b"event: status" in first:
                break
        assert time.perf_counter() - start < 0.1
        await body.aclose()  # type: ignore[attr-defined]
    finally:
        await engine.stop()


async def test_keepalive_comments_while_waiting_for_the_first_token() -> None:
    engine = await _engine(ttft_s=0.5)
    try:
        stream = await engine.create("u", _request("/tokens 2"), time.perf_counter())
        raw = await _drain(await _body(engine, stream.id, 0))
        before_first_delta = raw.split(b"event: delta")[0]
        assert before_first_delta.count(b": ping") >= 3
    finally:
        await engine.stop()


async def test_a_reader_behind_the_memory_window_catches_up_from_the_store() -> None:
    engine = await _engine(memory_window=16)
    try:
        request = _request("/tokens 200")
        stream = await engine.create("u", request, time.perf_counter())
        assert stream.task is not None
        await stream.task
        assert len(stream.events) <= 16  # memory stays bounded whatever the stream length
        assert stream.base > 1
        raw = await _drain(await _body(engine, stream.id, 0))
        frames = _frames(raw)
        assert [seq for seq, _ in frames] == list(range(1, 203))  # status + 200 deltas + done
        text = "".join(
            __import__("json").loads(line[6:])["text"]
            for line in raw.decode().split("\n")
            if line.startswith('data: {"text"')
        )
        assert text == "".join(script_reply(request)[0])
    finally:
        await engine.stop()


async def test_a_finished_stream_keeps_only_its_newest_events_in_memory() -> None:
    engine = await _engine(retain_events=10)
    try:
        stream = await engine.create("u", _request("/tokens 100"), time.perf_counter())
        assert stream.task is not None
        await stream.task  # ends after the final flush: everything is stored
        assert len(stream.events) == 10
        assert engine.live.get(stream.id) is stream  # still answered from this node
        whole = _frames(await _drain(await _body(engine, stream.id, 0)))
        assert [seq for seq, _ in whole] == list(range(1, 103))  # older ones from the store
        tail = _frames(await _drain(await _body(engine, stream.id, 95)))
        assert tail == [(seq, "delta") for seq in range(96, 102)] + [(102, "done")]
    finally:
        await engine.stop()


async def test_store_writes_are_batched() -> None:
    engine = await _engine(delay_s=0.005)
    try:
        stream = await engine.create("u", _request("/tokens 100"), time.perf_counter())
        assert stream.task is not None
        await stream.task
        appends = engine.store.writes
        # 102 events in batches of at most 8, each written once: far fewer writes than events
        assert appends <= 102 / 4
    finally:
        await engine.stop()


@pytest.mark.parametrize("reason", ["client"])
async def test_cancel_ends_with_done_cancelled_and_releases_everything(reason: str) -> None:
    engine = await _engine(delay_s=0.01)
    try:
        stream = await engine.create("u", _request("/tokens 500"), time.perf_counter())
        await asyncio.sleep(0.1)
        result = await engine.cancel("u", stream.id)
        assert result["status"] == "cancelled"
        frames = _frames(await _drain(await _body(engine, stream.id, 0)))
        assert frames[-1][1] == "done"
        assert engine.metrics.active_streams._value.get() == 0  # type: ignore[attr-defined]
        assert not await engine.store.release("u", stream.id)  # its slot was given back
        assert engine.metrics.connections._value.get() == 0  # type: ignore[attr-defined]
    finally:
        await engine.stop()


class _Client:
    """The client side of one SSE response, as its ASGI server sees it. Like uvicorn, its
    ``send`` waits (before writing) while the client reads nothing (``reading`` clear)."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.reading = asyncio.Event()
        self.reading.set()
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, str]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, object]) -> None:
        await self.reading.wait()
        if message["type"] == "http.response.body":
            self.body += message["body"]  # type: ignore[operator]


async def _serve(engine: StreamEngine, stream_id: str, client: _Client) -> asyncio.Task[None]:
    """Serve the stream's events as the controller does, with the producer writing new
    deltas straight to the caught-up client (its Outlet)."""
    outlet = Outlet()
    opened = await engine.open("u", stream_id, 0, native, sink=outlet)
    app = EventStream(opened, 1000, None, outlet)
    scope = {"type": "http"}
    return asyncio.ensure_future(app(scope, client.receive, client.send))  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_client_that_stops_reading_gets_every_event_once_it_reads_again() -> None:
    engine = await _engine(delay_s=0.002, memory_window=16)
    try:
        request = _request("/tokens 300")
        stream = await engine.create("u", request, time.perf_counter())
        client = _Client()
        served = await _serve(engine, stream.id, client)
        await _until(lambda: len(_frames(bytes(client.body))) >= 20)
        assert stream.direct  # caught up: the producer writes its deltas itself
        client.reading.clear()  # the client stops reading mid-stream
        assert stream.task is not None
        await stream.task  # the producer ran on to the end without waiting for it
        assert len(stream.events) <= 16  # and the server kept only its window in memory
        client.reading.set()
        await asyncio.wait_for(served, 5)
        frames = _frames(bytes(client.body))
        assert [seq for seq, _ in frames] == list(range(1, 303))  # no gap, no duplicate
        assert frames[-1] == (302, "done")
        text = "".join(
            json.loads(line[6:])["text"]
            for line in client.body.decode().split("\n")
            if line.startswith('data: {"text"')
        )
        assert text == "".join(script_reply(request)[0])
    finally:
        await engine.stop()


async def test_keepalive_comments_between_slow_tokens_of_a_caught_up_client() -> None:
    engine = await _engine(delay_s=0.4)  # keepalive every 0.1 s
    try:
        stream = await engine.create("u", _request("/tokens 3"), time.perf_counter())
        client = _Client()
        served = await _serve(engine, stream.id, client)
        await asyncio.wait_for(served, 5)
        after_first_delta = bytes(client.body).split(b"event: delta", 1)[1]
        between = after_first_delta.split(b"event: delta")[:-1]
        assert len(between) == 2 and all(gap.count(b": ping") >= 2 for gap in between)
    finally:
        await engine.stop()


async def test_a_client_that_leaves_mid_stream_releases_its_reader() -> None:
    engine = await _engine(delay_s=0.01)
    try:
        stream = await engine.create("u", _request("/tokens 500"), time.perf_counter())
        client = _Client()
        served = await _serve(engine, stream.id, client)
        await _until(lambda: bool(stream.direct))
        client.gone.set()
        await asyncio.wait_for(served, 5)
        assert stream.direct == {} and stream.presence.local == 0
        assert engine.metrics.connections._value.get() == 0  # type: ignore[attr-defined]
    finally:
        await engine.stop()
