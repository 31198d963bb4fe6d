"""A reader on a node other than the producer's tails the store: it ends with the stream's
terminal event even when the producer's final flush and status land between two of its
reads (the store said "nothing new", then "completed")."""

from __future__ import annotations

from stream_service.engine.events import Event
from stream_service.engine.presence import ReaderPresence
from stream_service.engine.reader import Readers, ReadLimits
from stream_service.engine.types import EventKind
from stream_service.metrics import StreamMetrics
from stream_service.store import StreamMeta
from stream_service.store.base import ReadResult, now_ms
from stream_service.store.memory import MemoryStore


def _events(first: int, last: int) -> list[Event]:
    out = [Event.delta(seq, f"t{seq}") for seq in range(first, last)]
    out.append(Event.make(last, EventKind.DONE, {"finish_reason": "stop"}))
    return out


class _FinishesDuringARead(MemoryStore):
    """The producer (elsewhere) flushes its last events and finishes while a reader's read
    is on its way: the reader gets the answer from before."""

    def __init__(self, ending: list[Event]) -> None:
        super().__init__()
        self._ending = ending
        self.reads = 0

    async def read(self, stream_id: str, after_seq: int, limit: int | None = None) -> ReadResult:
        result = await super().read(stream_id, after_seq, limit)
        self.reads += 1
        if self._ending and after_seq == self._ending[0].seq - 1:
            ending, self._ending = self._ending, []
            await self.append(stream_id, [e.stored() for e in ending])
            await self.finish(stream_id, "elsewhere", "completed", ending[-1].seq)
        return result


async def test_a_remote_reader_gets_the_ending_flushed_while_it_read() -> None:
    first = _events(1, 19)[:-1]  # 1..18 stored while running
    store = _FinishesDuringARead(_events(19, 25))
    await store.create(StreamMeta(id="s1", owner="u", node="elsewhere", model="m"))
    await store.heartbeat("s1", "elsewhere", now_ms() + 60_000, 18)
    await store.append("s1", [e.stored() for e in first])
    presence = ReaderPresence(store, per_stream=4, per_user=4, heartbeat_s=1.0)
    readers = Readers(
        store,
        presence,
        StreamMetrics(),
        ReadLimits(keepalive_s=15.0, tail_interval_s=0.01, page_events=100),
        draining=lambda: False,
    )
    seat = presence.enter("u", "s1", None)
    seen: list[Event] = []
    try:
        async for item in readers.remote("s1", 0, seat):
            if isinstance(item, list):
                seen.extend(item)
    finally:
        presence.leave(seat)
    assert [e.seq for e in seen] == list(range(1, 26))  # no gap, no repeat
    assert seen[-1].kind == "done"
