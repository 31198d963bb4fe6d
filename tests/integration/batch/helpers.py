"""In-process helpers: make a batch through the service, read SQS, build Lambda events."""

from __future__ import annotations

import json
import time
from typing import Any

from core.aws import clients
from core.settings import Settings
from functions.batch.schemas import BatchRecord
from functions.batch.service import BatchService, CreateBatch
from tests.integration.batch.conftest import jsonl
from tests.support.lambda_events import FakeContext  # noqa: F401 - re-exported for the batch tests


def make_batch(
    settings: Settings, lines: list[dict[str, Any]], owner: str = "alice", window: str = "24h"
) -> BatchRecord:
    service = BatchService(settings)
    uploaded = service.upload_file(owner, "in.jsonl", "batch", jsonl(lines))
    request = CreateBatch(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window=window
    )
    return service.create_batch(owner, request)


def receive(settings: Settings, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    sqs = clients.sqs(settings)
    assert settings.batch_queue_url
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        reply = sqs.receive_message(
            QueueUrl=settings.batch_queue_url,
            MaxNumberOfMessages=min(10, count - len(got)),
            WaitTimeSeconds=1,
            AttributeNames=["All"],
        )
        got.extend(dict(m) for m in reply.get("Messages", []))
    assert len(got) == count, f"expected {count} messages, got {len(got)}"
    return sorted(got, key=lambda m: json.loads(m["Body"]).get("chunk", -1))


def read_jsonl(settings: Settings, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    service = BatchService(settings)
    record = service.store.get_file(file_id)
    assert record is not None
    return [json.loads(line) for line in service.store.read_body(record.s3_key).splitlines()]
