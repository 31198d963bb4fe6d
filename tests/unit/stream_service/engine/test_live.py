"""LiveStream and readers: an event is rendered once per format, not once per reader, on the
direct-delivery path (the producer writes to caught-up readers) and on the readers' own."""

from __future__ import annotations

import asyncio
import time

from core.providers.local import LocalProvider
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import Opened, StreamEngine
from stream_service.engine.events import Event, Format
from stream_service.engine.live import DirectReader
from stream_service.engine.reader import Signal
from stream_service.engine.types import EventKind
from stream_service.store.memory import MemoryStore
from tests.unit.stream_service.engine.support import chat, live_stream


class _Counting(Format):
    """A wire format that counts its renders, per seq."""

    def __init__(self, slot: int, tag: bytes) -> None:
        self.slot = slot
        self.tag = tag
        self.renders: list[int] = []

    def render(self, event: Event) -> bytes:
        self.renders.append(event.seq)
        return b"%s:%d;" % (self.tag, event.seq)


class _Sink:
    """A connection that takes every write at once."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    pending: None = None  # every write goes out at once

    def write(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    async def settle(self) -> None:
        return None


def _seqs(frames: list[bytes], tag: bytes) -> list[int]:
    out = []
    for frame in frames:
        for part in frame.split(b";"):
            if part:
                name, seq = part.split(b":")
                assert name == tag
                out.append(int(seq))
    return out


async def test_direct_delivery_renders_each_delta_once_per_format() -> None:
    stream = live_stream()
    stream.append(EventKind.STATUS, {"state": "thinking"})
    native, chunks = _Counting(0, b"n"), _Counting(1, b"c")
    loop = asyncio.get_running_loop()
    sinks = {native: [_Sink(), _Sink()], chunks: [_Sink(), _Sink()]}
    for fmt, group in sinks.items():
        for sink in group:
            stream.park(fmt, DirectReader(sink, 1, loop.create_future()))
    for n in range(10):
        stream.append_delta(f" t{n}")
    for fmt, group in sinks.items():
        assert fmt.renders == list(range(2, 12))  # once per event, for two readers
        for sink in group:
            assert _seqs(sink.frames, fmt.tag) == list(range(2, 12))
    # the same frames, asked for again (a reader catching up), are not rendered again
    assert native.frames(stream.since(1)) == b"".join(sinks[native][0].frames)
    assert native.renders == list(range(2, 12))


async def test_a_reader_that_is_not_next_in_line_is_handed_back() -> None:
    stream = live_stream()
    stream.append(EventKind.STATUS, {"state": "thinking"})
    fmt = _Counting(0, b"n")
    behind = DirectReader(_Sink(), 0, asyncio.get_running_loop().create_future())
    stream.park(fmt, behind)
    stream.append_delta(" a")  # seq 2, but it was sent only up to 0
    assert behind.parked.done() and stream.direct == {}
    assert behind.sink.frames == []  # type: ignore[attr-defined]


async def _engine() -> StreamEngine:
    engine = StreamEngine(
        Settings(keepalive_s=5, resume_grace_s=30),
        StreamSettings(node_id="n1", flush_interval_ms=100),
        MemoryStore(),
        LocalProvider(["local-model"], 0.05, 0.01),
    )
    await engine.start()
    return engine


async def _serve(opened: Opened, sink: _Sink) -> None:
    """What a transport does with a reader: render its batches, write them in order."""
    try:
        async for item in opened.items:
            if isinstance(item, list):
                sink.write(opened.format.frames(item))
            else:
                assert item is Signal.PING
    finally:
        await opened.close()


async def test_readers_in_two_formats_render_each_event_once_per_format() -> None:
    engine = await _engine()
    try:
        stream = await engine.create("u", chat("/tokens 60"), time.perf_counter())
        native, chunks = _Counting(0, b"n"), _Counting(1, b"c")

        def same(fmt: Format) -> object:
            return lambda _info: fmt

        readers = []
        for fmt in (native, native, chunks, chunks):
            sink = _Sink()
            opened = await engine.open("u", stream.id, 0, same(fmt), sink=sink)  # type: ignore[arg-type]
            readers.append((fmt, sink, asyncio.ensure_future(_serve(opened, sink))))
        await asyncio.wait_for(asyncio.gather(*(task for _, _, task in readers)), 10)
        last = stream.last_seq
        assert last == 62 and stream.events[-1].kind == "done"
        for fmt, sink, _ in readers:
            assert _seqs(sink.frames, fmt.tag) == list(range(1, last + 1))  # no gap, no repeat
        assert sorted(native.renders) == list(range(1, last + 1))  # once each, for 2 readers
        assert sorted(chunks.renders) == list(range(1, last + 1))
        assert stream.direct == {}  # every direct reader was handed back at the end
        # a late reader of the finished stream renders nothing new in a known format
        sink = _Sink()
        await _serve(await engine.open("u", stream.id, 50, same(native), sink=sink), sink)  # type: ignore[arg-type]
        assert _seqs(sink.frames, b"n") == list(range(51, last + 1))
        assert sorted(native.renders) == list(range(1, last + 1))
    finally:
        await engine.stop()


async def test_the_direct_path_is_used_by_caught_up_readers() -> None:
    engine = await _engine()
    try:
        stream = await engine.create("u", chat("/tokens 200"), time.perf_counter())
        fmt = _Counting(0, b"n")
        sink = _Sink()
        opened = await engine.open("u", stream.id, 0, lambda _i: fmt, sink=sink)
        served = asyncio.ensure_future(_serve(opened, sink))
        deadline = time.monotonic() + 5
        while not stream.direct:
            assert time.monotonic() < deadline, "the reader never parked"
            await asyncio.sleep(0.005)
        await asyncio.wait_for(served, 10)
        single = [f for f in sink.frames if f.count(b";") == 1]
        assert len(single) > 100  # most deltas were written one by one, by the producer
        assert _seqs(sink.frames, b"n") == list(range(1, stream.last_seq + 1))
    finally:
        await engine.stop()


def test_formats_in_different_slots_keep_separate_frames() -> None:
    event = Event.make(7, EventKind.DELTA, {"text": "x"})
    a, b, c = _Counting(0, b"a"), _Counting(1, b"b"), _Counting(2, b"c")
    assert (a.frame(event), b.frame(event), c.frame(event)) == (b"a:7;", b"b:7;", b"c:7;")
    assert (a.frame(event), b.frame(event), c.frame(event)) == (b"a:7;", b"b:7;", b"c:7;")
    assert a.renders == b.renders == c.renders == [7]
