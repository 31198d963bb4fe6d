"""The worker Lambda never outlives its invocation: a chunk that cannot finish in the time
left is handed back (``batchItemFailures``, visible again at once), its finished lines kept;
a hanging upstream call ends at ``OPENAI_TIMEOUT_S``. Real SQS and DynamoDB (moto over
HTTP), the local model slowed down, real Lambda event shapes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.settings import Settings
from devstack.batch_worker import ensure_local_batch_resources, sqs_event
from functions.batch.store.dynamodb import DynamoBatchStore
from functions.batch_worker import handler as worker_handler
from functions.batch_worker.handler import WorkerRuntime
from tests.integration.batch.conftest import chat_line, fast
from tests.integration.batch.helpers import FakeContext, make_batch, receive

ARN = "arn:aws:sqs:us-east-1:123456789012:rtai-batch"


class InvocationContext(FakeContext):
    """A Lambda context whose remaining time runs down like a real invocation's."""

    def __init__(self, timeout_s: float) -> None:
        self.ends_at = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends_at - time.monotonic()) * 1000))


def lines(n: int) -> list[dict[str, Any]]:
    return [chat_line(f"c{i}", f"prompt {i}", max_tokens=2) for i in range(n)]


def with_queue(settings: Settings, **overrides: Any) -> Settings:
    """Fast settings on a fresh queue whose visibility timeout (60 s) is far longer than
    the test: a message seen again within seconds was released, not timed out. A hand-back
    counts as a receive (docs/batch.md), so the DLQ threshold is 10 here."""
    base = fast(settings, **overrides).model_copy(update={"batch_queue_url": None})
    return ensure_local_batch_resources(
        base,
        queue_name=f"rtai-deadline-{uuid.uuid4().hex[:10]}",
        visibility_timeout_s=60,
        max_receive_count=10,
    )


@pytest.fixture
def slow_settings(settings: Settings) -> Settings:
    # one line at a time, each ~0.8 s upstream; a call may take 2 s; hand back 0.5 s early
    return with_queue(
        settings,
        local_ttft_ms=800.0,
        batch_concurrency=1,
        openai_timeout_s=2.0,
        batch_handback_margin_s=0.5,
    )


@pytest.fixture
def runtime(slow_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerRuntime]:
    rt = WorkerRuntime(slow_settings)
    monkeypatch.setattr(worker_handler, "_runtime", rt)
    yield rt
    rt.close()


def test_a_chunk_that_does_not_fit_is_handed_back_and_finished_next_time(
    slow_settings: Settings, runtime: WorkerRuntime
) -> None:
    batch = make_batch(slow_settings, lines(10))  # one chunk of 10 lines: ~8 s of calls
    (message,) = receive(slow_settings, 1)
    invocation_s = 5.0
    started = time.monotonic()
    reply = worker_handler.handler(
        sqs_event([message], ARN, "us-east-1"), InvocationContext(invocation_s)
    )  # type: ignore[arg-type]
    took = time.monotonic() - started
    # handed back, not failed: the invocation returned inside its time
    assert reply == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert took < invocation_s, took
    assert runtime.worker.stats.handed_back == 1
    done_first = runtime.worker.stats.lines_succeeded
    assert 1 <= done_first < 10  # what fitted was done and saved
    store = DynamoBatchStore(slow_settings)
    partial = store.get_batch(batch.id)
    assert partial is not None and partial.status == "in_progress"

    # visible again at once (not after the queue's visibility timeout), same message
    (again,) = receive(slow_settings, 1, timeout=5)
    assert again["MessageId"] == message["MessageId"]
    assert int(again["Attributes"]["ApproximateReceiveCount"]) == 2

    # the next invocation skips the lines already done and finishes the chunk
    while True:
        reply = worker_handler.handler(
            sqs_event([again], ARN, "us-east-1"), InvocationContext(invocation_s)
        )  # type: ignore[arg-type]
        if reply == {"batchItemFailures": []}:
            break
        (again,) = receive(slow_settings, 1, timeout=5)
    assert runtime.worker.stats.lines_succeeded == 10  # each line run exactly once
    assert runtime.worker.stats.duplicates >= done_first
    finished = store.get_batch(batch.id)
    assert finished is not None and finished.status == "completed"
    assert (finished.completed, finished.failed) == (10, 0)


def test_a_hanging_upstream_call_ends_at_openai_timeout_s(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    hanging = with_queue(
        settings,
        local_ttft_ms=60_000.0,  # the model never answers within the invocation
        batch_concurrency=2,
        openai_timeout_s=1.0,
        batch_max_attempts=2,
        batch_handback_margin_s=0.5,
    )
    rt = WorkerRuntime(hanging)
    monkeypatch.setattr(worker_handler, "_runtime", rt)
    try:
        batch = make_batch(hanging, lines(2))
        (message,) = receive(hanging, 1)
        started = time.monotonic()
        reply = worker_handler.handler(
            sqs_event([message], ARN, "us-east-1"), InvocationContext(10.0)
        )  # type: ignore[arg-type]
        took = time.monotonic() - started
        # two attempts of 1 s each per line, then the line is written as failed
        assert reply == {"batchItemFailures": []}
        assert took < 10.0, took
        assert rt.worker.stats.lines_failed == 2
        done = DynamoBatchStore(hanging).get_batch(batch.id)
        assert done is not None and (done.completed, done.failed) == (0, 2)
    finally:
        rt.close()
