"""Producer alone: how each way of ending shows in the stream (terminal event, status),
with the local scripted model as upstream."""

from __future__ import annotations

import json

import pytest

from core.providers.local import LocalProvider, script_reply
from stream_service.engine.events import Event
from stream_service.engine.live import LiveStream
from stream_service.engine.producer import Producer
from stream_service.engine.types import StopReason, StreamStatus
from stream_service.engine.watchdog import Limits
from stream_service.metrics import StreamMetrics
from tests.unit.stream_service.engine.support import chat, live_stream, until

LIMITS = Limits(
    keepalive_s=1,
    resume_grace_s=1,
    poll_interval_s=0.1,
    lease_ttl_s=6,
    first_token_s=600,
    idle_s=60,
)


class _Rig:
    def __init__(self, ttft_s: float = 0.0, delay_s: float = 0.01) -> None:
        self.ended: list[LiveStream] = []
        self.flushes = 0
        self.producer = Producer(
            LocalProvider(["local-model"], ttft_s, delay_s),
            StreamMetrics(),
            LIMITS,
            flush_at=8,
            flush_soon=self._flush_soon,
            on_end=self._on_end,
        )

    def _flush_soon(self, _stream: LiveStream) -> None:
        self.flushes += 1

    async def _on_end(self, stream: LiveStream) -> None:
        self.ended.append(stream)

    async def run(self, prompt: str) -> LiveStream:
        stream = live_stream()
        self.producer.start(stream, chat(prompt))
        return stream


def _payload(event: Event) -> dict[str, object]:
    return json.loads(event.data)  # type: ignore[no-any-return]


def _ids(stream: LiveStream) -> list[int]:
    return [e.seq for e in stream.events]


async def test_a_finished_upstream_ends_with_done_stop_and_usage() -> None:
    rig = _Rig(delay_s=0.0)
    stream = await rig.run("/tokens 20")
    assert stream.task is not None
    await stream.task
    assert _ids(stream) == list(range(1, 23))  # status, 20 deltas, done
    assert [e.kind for e in stream.events][:2] == ["status", "delta"]
    last = stream.events[-1]
    assert last.kind == "done" and stream.status is StreamStatus.COMPLETED
    done = _payload(last)
    assert done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] == 20  # type: ignore[index]
    assert done["metrics"]["tokens"] == 20  # type: ignore[index]
    text = "".join(json.loads(e.data)["text"] for e in stream.events if e.kind == "delta")
    assert text == "".join(script_reply(chat("/tokens 20"))[0])
    assert stream.finished and rig.ended == [stream]
    assert rig.flushes >= 2  # every FLUSH_MAX_EVENTS deltas


async def test_an_upstream_error_ends_with_its_error() -> None:
    rig = _Rig()
    stream = await rig.run("/fail")
    assert stream.task is not None
    await stream.task
    assert [e.kind for e in stream.events] == ["status", "delta", "error"]
    error = _payload(stream.events[-1])
    assert error["code"] == "upstream_error" and error["retryable"] is True
    assert stream.status is StreamStatus.FAILED


ENDINGS = [
    (StopReason.CLIENT, "done", StreamStatus.CANCELLED, "cancelled"),
    (StopReason.NO_READER, "done", StreamStatus.CANCELLED, "cancelled"),
    (StopReason.REPLACED, "done", StreamStatus.CANCELLED, "cancelled"),
    (StopReason.FIRST_TOKEN_TIMEOUT, "error", StreamStatus.FAILED, "upstream_timeout"),
    (StopReason.UPSTREAM_TIMEOUT, "error", StreamStatus.FAILED, "upstream_timeout"),
    (StopReason.DRAIN_DEADLINE, "error", StreamStatus.FAILED, "producer_lost"),
]


@pytest.mark.parametrize(("reason", "kind", "status", "detail"), ENDINGS)
async def test_each_stop_reason_ends_with_its_terminal_event(
    reason: StopReason, kind: str, status: StreamStatus, detail: str
) -> None:
    rig = _Rig()
    stream = await rig.run("/tokens 1000")
    await until(lambda: stream.last_seq >= 4)
    assert rig.producer.stop(stream, reason)
    assert not rig.producer.stop(stream, StopReason.CLIENT)  # already ending: once
    assert stream.task is not None
    await stream.task
    seqs = _ids(stream)
    assert seqs == list(range(1, len(seqs) + 1))
    last = stream.events[-1]
    assert last.kind == kind and last.terminal
    assert sum(e.terminal for e in stream.events) == 1
    assert stream.status is status
    payload = _payload(last)
    if kind == "done":
        assert payload["finish_reason"] == detail
    else:
        assert payload["code"] == detail and payload["retryable"] is True
    if reason is StopReason.FIRST_TOKEN_TIMEOUT:
        assert "600 s before its first token" in str(payload["message"])
    if reason is StopReason.UPSTREAM_TIMEOUT:
        assert "60 s between two tokens" in str(payload["message"])
    assert stream.finished and rig.ended == [stream]


async def test_a_stream_stopped_while_thinking_ends_after_its_status() -> None:
    rig = _Rig(ttft_s=5.0)
    stream = await rig.run("hi")
    await until(lambda: stream.last_seq == 1)  # only the status
    rig.producer.stop(stream, StopReason.FIRST_TOKEN_TIMEOUT)
    assert stream.task is not None
    await stream.task
    assert [e.kind for e in stream.events] == ["status", "error"]


async def test_a_lost_lease_appends_nothing() -> None:
    rig = _Rig()
    stream = await rig.run("/tokens 1000")
    await until(lambda: stream.last_seq >= 4)
    assert rig.producer.stop(stream, StopReason.LEASE_LOST)
    before = stream.last_seq
    assert stream.task is not None
    await stream.task
    assert stream.last_seq == before
    assert not any(e.terminal for e in stream.events)
    assert stream.lease_lost and stream.status is StreamStatus.FAILED
    assert stream.finished and rig.ended == [stream]


async def test_stopping_a_finished_stream_does_nothing() -> None:
    rig = _Rig(delay_s=0.0)
    stream = await rig.run("/tokens 3")
    assert stream.task is not None
    await stream.task
    assert not rig.producer.stop(stream, StopReason.CLIENT)
    assert stream.events[-1].kind == "done" and stream.status is StreamStatus.COMPLETED


async def test_cancelled_from_outside_counts_as_the_drain_deadline() -> None:
    """The process going down cancels the task itself: the stream still gets an ending."""
    rig = _Rig()
    stream = await rig.run("/tokens 1000")
    await until(lambda: stream.last_seq >= 3)
    assert stream.task is not None
    stream.task.cancel()
    await stream.task  # the producer handles its own cancellation
    assert stream.stop_reason is StopReason.DRAIN_DEADLINE
    assert _payload(stream.events[-1])["code"] == "producer_lost"
