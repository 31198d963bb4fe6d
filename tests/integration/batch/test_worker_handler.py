"""The worker Lambda's handler, fed real SQS event shapes: poison, retries, crashes, DLQ."""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.aws import clients
from core.settings import Settings
from devstack.batch_worker import LocalBatchWorker, ensure_local_batch_resources, sqs_event
from functions.batch.store.dynamodb import DynamoBatchStore
from functions.batch_worker import handler as worker_handler
from functions.batch_worker.handler import WorkerRuntime
from tests.integration.batch.conftest import chat_line
from tests.integration.batch.helpers import FakeContext, make_batch, read_jsonl, receive

ARN = "arn:aws:sqs:us-east-1:123456789012:rtai-batch"


@pytest.fixture
def runtime(batch_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    rt = WorkerRuntime(batch_settings)
    monkeypatch.setattr(worker_handler, "_runtime", rt)
    yield rt
    rt.close()


def lines(n: int) -> list[dict[str, Any]]:
    return [chat_line(f"c{i}", f"prompt {i}", max_tokens=4) for i in range(n)]


def test_poison_and_retried_messages(batch_settings: Settings, runtime: WorkerRuntime) -> None:
    batch = make_batch(batch_settings, lines(60))  # 3 chunks of 25, 25, 10
    assert batch.chunks_total == 3
    chunk0, chunk1, chunk2 = receive(batch_settings, 3)
    poison = {
        "MessageId": "poison-1",
        "ReceiptHandle": "rh-poison",
        "Body": "{this is not json",
        "Attributes": {"ApproximateReceiveCount": "1"},
    }
    first = sqs_event([chunk0, poison, chunk1], ARN, "us-east-1")
    assert first["Records"][1]["eventSource"] == "aws:sqs"
    reply = worker_handler.handler(first, FakeContext())  # type: ignore[arg-type]
    assert reply == {"batchItemFailures": [{"itemIdentifier": "poison-1"}]}

    # chunk 0 is delivered again (its delete was lost), together with the last chunk.
    retried = dict(chunk0, ReceiptHandle="rh-again")
    retried["Attributes"] = {**chunk0["Attributes"], "ApproximateReceiveCount": "2"}
    second = sqs_event([retried, chunk2], ARN, "us-east-1")
    assert worker_handler.handler(second, FakeContext()) == {"batchItemFailures": []}  # type: ignore[arg-type]
    assert runtime.worker.stats.duplicates == 25

    done = DynamoBatchStore(batch_settings).get_batch(batch.id)
    assert done is not None and done.status == "completed"
    assert (done.total, done.completed, done.failed) == (60, 60, 0)
    out = read_jsonl(batch_settings, done.output_file_id)
    assert sorted(r["custom_id"] for r in out) == sorted(f"c{i}" for i in range(60))


def wait_status(settings: Settings, batch_id: str, status: str, timeout: float = 20) -> Any:
    store = DynamoBatchStore(settings)
    deadline = time.monotonic() + timeout
    while (b := store.get_batch(batch_id)) and b.status != status:
        assert time.monotonic() < deadline, b
        time.sleep(0.1)
    return b


def test_crash_between_result_and_delete_adds_no_duplicate(batch_settings: Settings) -> None:
    batch = make_batch(batch_settings, lines(50))
    crashes: list[int] = []

    def crash_once(done: list[dict[str, Any]]) -> None:
        if not crashes:
            crashes.append(len(done))
            raise RuntimeError("worker killed after writing results, before deleting")

    with LocalBatchWorker(batch_settings, wait_s=1, before_delete=crash_once) as worker:
        b = wait_status(batch_settings, batch.id, "completed")
        deadline = time.monotonic() + 15
        while worker.processed < 2:  # both chunks come back after the visibility timeout
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert crashes == [2]
    again = DynamoBatchStore(batch_settings).get_batch(batch.id)
    assert again is not None and (again.completed, again.failed) == (50, 0) == (
        b.completed,
        b.failed,
    )
    out = read_jsonl(batch_settings, b.output_file_id)
    assert len(out) == 50 and len({r["custom_id"] for r in out}) == 50


def test_crash_mid_chunk_resumes_without_duplicates(batch_settings: Settings) -> None:
    batch = make_batch(batch_settings, lines(25))  # one chunk
    with LocalBatchWorker(batch_settings, wait_s=1) as worker:
        store = worker.runtime.store
        real = store.record_result
        calls: list[int] = []

        def flaky(batch_id: str, item: Any) -> bool:
            calls.append(item.line)
            if len(calls) == 10:
                raise RuntimeError("lost the connection to DynamoDB after 9 results")
            return real(batch_id, item)

        store.record_result = flaky  # type: ignore[method-assign]
        b = wait_status(batch_settings, batch.id, "completed")
        stats = worker.runtime.worker.stats
    assert stats.duplicates >= 9  # the redelivery skipped the lines already written
    assert (b.completed, b.failed) == (25, 0)
    out = read_jsonl(batch_settings, b.output_file_id)
    assert sorted(r["custom_id"] for r in out) == sorted(f"c{i}" for i in range(25))


def test_poison_message_lands_in_dlq(settings: Settings) -> None:
    from tests.integration.batch.conftest import fast

    fresh = fast(settings)
    tight = ensure_local_batch_resources(
        fresh.model_copy(update={"batch_queue_url": None}),
        queue_name=f"poison-{time.time_ns()}",
        visibility_timeout_s=1,
        max_receive_count=2,
    )
    sqs = clients.sqs(tight)
    assert tight.batch_queue_url
    sqs.send_message(QueueUrl=tight.batch_queue_url, MessageBody='{"type": "chunk"}')
    dlq_url = tight.batch_queue_url + "-dlq"
    with LocalBatchWorker(tight, wait_s=1):
        deadline = time.monotonic() + 15
        while True:
            got = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])
            if got:
                break
            assert time.monotonic() < deadline, "poison message never reached the DLQ"
    assert got[0]["Body"] == '{"type": "chunk"}'
