"""The engine's create, as the store and the upstream see it: admission is one store call
before the upstream call whatever the user's active count, and a refused create calls
nothing upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core.errors import RateLimited
from core.providers.base import UpstreamEvent
from core.providers.local import LocalProvider
from core.schemas.chat import ChatCompletionRequest
from core.settings import Settings
from stream_service.config import StreamSettings
from stream_service.engine.engine import StreamEngine
from stream_service.store import Holder, StreamStore
from stream_service.store.base import now_ms
from stream_service.store.memory import MemoryStore
from tests.unit.stream_service.engine.support import chat, until

UPSTREAM = "-> upstream"


class _CallLog(MemoryStore):
    """A memory store that logs every call of the store interface, in order."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log


def _logged(name: str) -> Callable[..., Any]:
    async def method(self: _CallLog, *args: Any, **kwargs: Any) -> Any:
        self.log.append(name)
        return await getattr(MemoryStore, name)(self, *args, **kwargs)

    return method


for _name in StreamStore.__abstractmethods__:
    setattr(_CallLog, _name, _logged(_name))


class _Upstream(LocalProvider):
    """The local model, logging the moment each request goes upstream."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(["local-model"], 0.0, 0.05)
        self.log = log

    async def stream(
        self, request: ChatCompletionRequest, on_text: Callable[[str], None] | None = None
    ) -> AsyncIterator[UpstreamEvent]:
        self.log.append(UPSTREAM)
        async for item in super().stream(request):
            yield item


def _engine(log: list[str], limit: int) -> StreamEngine:
    # not started: no background loop calls the store, only what create itself does
    return StreamEngine(
        Settings(max_streams_per_user=limit),
        StreamSettings(node_id="n1"),
        _CallLog(log),
        _Upstream(log),
    )


@pytest.mark.parametrize("active", [0, 10, 500])
async def test_one_store_call_before_the_upstream_call_whatever_the_active_count(
    active: int,
) -> None:
    log: list[str] = []
    engine = _engine(log, limit=1000)
    store = engine.store
    for n in range(active):  # the user's other streams, on this node
        assert (await store.admit("u", Holder(f"s{n}", "n1", now_ms()), 1000)).admitted
    log.clear()
    stream = await engine.create("u", chat("/tokens 3"), time.perf_counter())
    await until(lambda: UPSTREAM in log)
    assert log[: log.index(UPSTREAM)] == ["admit"]
    assert stream.task is not None
    stream.task.cancel()
    await asyncio.gather(stream.task, return_exceptions=True)


async def test_a_refused_create_calls_nothing_upstream() -> None:
    log: list[str] = []
    engine = _engine(log, limit=2)
    for _ in range(2):
        await engine.create("u", chat("/tokens 1000"), time.perf_counter())
    await until(lambda: log.count(UPSTREAM) == 2)
    log.clear()
    for _ in range(50):
        with pytest.raises(RateLimited):
            await engine.create("u", chat("hi"), time.perf_counter())
        with pytest.raises(RateLimited):
            await engine.complete("u", chat("hi"))
    await asyncio.sleep(0.05)
    assert UPSTREAM not in log
    assert set(log) == {"admit"}  # both holders run on this (live) node: nothing else
    assert engine.metrics.limit_rejections._value.get() == 100  # type: ignore[attr-defined]
    for stream in list(engine.live.values()):
        assert stream.task is not None
        stream.task.cancel()
        await asyncio.gather(stream.task, return_exceptions=True)
