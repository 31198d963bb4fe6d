"""Retries against a real HTTP upstream, expiry, the sweep, presigned upload and download."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from pydantic import SecretStr

from core.aws import clients
from core.settings import Settings
from devstack.batch_worker import LocalBatchWorker, sqs_event
from devstack.upstream import ScriptedUpstream
from functions.api.app import create_app
from functions.batch.store.dynamodb import DynamoBatchStore
from functions.batch_worker.handler import WorkerRuntime
from tests.integration.batch.conftest import TERMINAL, chat_line, fast, jsonl, wait_for
from tests.integration.batch.helpers import make_batch, read_jsonl, receive
from tests.integration.batch.test_worker_handler import wait_status
from tests.support.servers import ThreadServer

ARN = "arn:aws:sqs:us-east-1:123456789012:rtai-batch"


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, str]]:
    scripted = ScriptedUpstream(
        ttft_s=0.0,
        interval_s=0.0,
        models=("upstream-model", "flaky", "broken", "limited"),
        failures={"flaky": [429, 429], "broken": [503] * 10, "limited": [429] * 10},
    )
    with ThreadServer(scripted) as server:
        yield scripted, server.url


def test_upstream_429_and_5xx_are_retried_with_backoff(
    settings: Settings, upstream: tuple[ScriptedUpstream, str]
) -> None:
    scripted, url = upstream
    remote = fast(
        settings,
        llm_provider="openai",
        openai_base_url=f"{url}/v1",
        openai_api_key=SecretStr("test"),
        models="upstream-model,flaky,broken,limited",
        batch_max_attempts=4,
    )
    lines = [
        chat_line("plain", "hi", model="upstream-model", max_tokens=3),
        chat_line("flaky", "hi", model="flaky", max_tokens=2),
        chat_line("broken", "hi", model="broken"),
        chat_line("limited", "hi", model="limited"),
    ]
    batch = make_batch(remote, lines)
    with LocalBatchWorker(remote, wait_s=1) as worker:
        done = wait_status(remote, batch.id, "completed")
        stats = worker.runtime.worker.stats
    assert (done.completed, done.failed) == (2, 2)
    out = {r["custom_id"]: r["response"]["body"] for r in read_jsonl(remote, done.output_file_id)}
    assert out["plain"]["choices"][0]["message"]["content"] == " w0 w1 w2"
    assert out["flaky"]["choices"][0]["message"]["content"] == " w0 w1"  # third attempt
    errors = {r["custom_id"]: r["response"] for r in read_jsonl(remote, done.error_file_id)}
    assert errors["broken"]["status_code"] == 502
    assert errors["limited"]["status_code"] == 429
    assert errors["limited"]["body"]["error"]["type"] == "rate_limit_error"
    # flaky: 2 retries; broken and limited: 3 retries each (4 attempts), nothing more.
    assert stats.upstream_retries == 2 + 3 + 3
    assert scripted.stats.injected_failures == 2 + 4 + 4


def _expire(settings: Settings, batch_id: str) -> None:
    clients.dynamodb(settings).update_item(
        TableName=settings.jobs_table,
        Key={"pk": {"S": f"batch#{batch_id}"}, "sk": {"S": "meta"}},
        UpdateExpression="SET deadline = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )


def test_expiry_keeps_partial_results(batch_settings: Settings) -> None:
    lines = [chat_line(f"e{i}", f"p{i}", max_tokens=2) for i in range(60)]
    batch = make_batch(batch_settings, lines)
    first, *rest = receive(batch_settings, 3)
    rt = WorkerRuntime(batch_settings)
    try:
        assert rt.process(sqs_event([first], ARN, "us-east-1")) == {"batchItemFailures": []}
        _expire(batch_settings, batch.id)
        assert rt.process(sqs_event(rest, ARN, "us-east-1")) == {"batchItemFailures": []}
    finally:
        rt.close()
    done = DynamoBatchStore(batch_settings).get_batch(batch.id)
    assert done is not None and done.status == "expired"
    assert "expired_at" in done.timestamps
    assert (done.total, done.completed, done.failed) == (60, 25, 0)
    assert len(read_jsonl(batch_settings, done.output_file_id)) == 25
    errors = read_jsonl(batch_settings, done.error_file_id)
    assert [e["custom_id"] for e in errors] == [f"e{i}" for i in range(25, 60)]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}


def test_sweep_expires_a_batch_whose_messages_were_lost(batch_settings: Settings) -> None:
    batch = make_batch(batch_settings, [chat_line(f"s{i}", "x") for i in range(30)])
    lost = receive(batch_settings, 2)  # e.g. dead-lettered: never processed
    sqs = clients.sqs(batch_settings)
    for m in lost:
        sqs.delete_message(
            QueueUrl=str(batch_settings.batch_queue_url), ReceiptHandle=m["ReceiptHandle"]
        )
    _expire(batch_settings, batch.id)
    rt = WorkerRuntime(batch_settings)
    try:
        assert rt.process({"source": "aws.events", "detail-type": "Scheduled Event"}) == {
            "swept": [batch.id]
        }
        (finalize,) = receive(batch_settings, 1)
        assert json.loads(finalize["Body"]) == {"type": "finalize", "batch_id": batch.id}
        rt.process(sqs_event([finalize], ARN, "us-east-1"))
    finally:
        rt.close()
    done = DynamoBatchStore(batch_settings).get_batch(batch.id)
    assert done is not None and done.status == "expired" and done.executed == 0
    assert len(read_jsonl(batch_settings, done.error_file_id)) == 30
    assert done.output_file_id is None


def test_presigned_upload_and_redirected_download(settings: Settings, token: str) -> None:
    s = fast(settings, batch_inline_content_bytes=64)
    content = jsonl([chat_line(f"u{i}", f"hello {i}", max_tokens=2) for i in range(30)])
    auth = {"Authorization": f"Bearer {token}"}
    with ThreadServer(create_app(s)) as server, LocalBatchWorker(s, wait_s=1):
        made = httpx.post(
            f"{server.url}/api/v1/files/uploads",
            json={"filename": "big.jsonl", "bytes": len(content), "purpose": "batch"},
            headers=auth,
        )
        assert made.status_code == 200, made.text
        upload: dict[str, Any] = made.json()["upload"]
        file_id = made.json()["file"]["id"]
        client = openai.OpenAI(base_url=f"{server.url}/api/v1", api_key=token, max_retries=0)
        with pytest.raises(openai.BadRequestError) as early:
            client.batches.create(
                input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        assert early.value.code == "file_not_uploaded"
        posted = httpx.post(
            upload["url"], data=upload["fields"], files={"file": ("big.jsonl", content)}
        )
        assert posted.status_code in (200, 201, 204), posted.text
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert client.files.retrieve(file_id).status == "processed"
        done = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
        assert done.status == "completed" and done.request_counts.completed == 30
        direct = httpx.get(f"{server.url}/api/v1/files/{done.output_file_id}/content", headers=auth)
        assert direct.status_code == 302 and "Signature" in direct.headers["location"]
        out = client.files.content(done.output_file_id).text.splitlines()  # follows it
        assert len(out) == 30


def test_a_finalizer_that_dies_is_replaced_once_its_lease_expires(
    batch_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.batch.finalizer import Finalizer

    batch = make_batch(batch_settings, [chat_line(f"f{i}", "x", max_tokens=2) for i in range(10)])
    (chunk,) = receive(batch_settings, 1)
    real = Finalizer._assemble

    def die(self: Finalizer, held: Any, token: str) -> Any:
        raise RuntimeError("killed while writing the output file")

    monkeypatch.setattr(Finalizer, "_assemble", die)
    rt = WorkerRuntime(batch_settings)
    try:
        with pytest.raises(BatchProcessingError):  # every record failed: Lambda retries all
            rt.process(sqs_event([chunk], ARN, "us-east-1"))
        stuck = DynamoBatchStore(batch_settings).get_batch(batch.id)
        assert stuck is not None and stuck.status == "finalizing" and stuck.finalize_token
        monkeypatch.setattr(Finalizer, "_assemble", real)
        # The redelivered chunk can't finalize while the dead finalizer's lease holds...
        rt.process(sqs_event([chunk], ARN, "us-east-1"))
        assert DynamoBatchStore(batch_settings).get_batch(batch.id).status == "finalizing"  # type: ignore[union-attr]
        clients.dynamodb(batch_settings).update_item(
            TableName=batch_settings.jobs_table,
            Key={"pk": {"S": f"batch#{batch.id}"}, "sk": {"S": "meta"}},
            UpdateExpression="SET lease_until = :past",
            ExpressionAttributeValues={":past": {"N": "1"}},
        )
        # ...and once it has expired, the sweep hands the batch to a new finalizer.
        assert rt.process({"source": "aws.events"}) == {"swept": [batch.id]}
        (finalize,) = receive(batch_settings, 1)
        rt.process(sqs_event([finalize], ARN, "us-east-1"))
    finally:
        rt.close()
    done = DynamoBatchStore(batch_settings).get_batch(batch.id)
    assert done is not None and done.status == "completed"
    assert (done.completed, done.failed) == (10, 0)
    assert len(read_jsonl(batch_settings, done.output_file_id)) == 10


def test_a_batch_whose_input_file_was_deleted_still_ends(batch_settings: Settings) -> None:
    """An input object gone mid-run (the API refuses to delete it, but S3 lifecycle rules or
    a hand in the bucket can) must not leave the batch finalizing forever: it ends failed,
    with the results of the lines that ran."""
    lines = [chat_line(f"d{i}", f"p{i}", max_tokens=2) for i in range(60)]
    batch = make_batch(batch_settings, lines)
    first, *_ = receive(batch_settings, 3)
    rt = WorkerRuntime(batch_settings)
    try:
        assert rt.process(sqs_event([first], ARN, "us-east-1")) == {"batchItemFailures": []}
        DynamoBatchStore(batch_settings).delete_object(batch.input_key)
        _expire(batch_settings, batch.id)
        assert rt.process({"source": "aws.events", "detail-type": "Scheduled Event"}) == {
            "swept": [batch.id]
        }
        finalize = [
            m for m in receive(batch_settings, 3) if json.loads(m["Body"]).get("type") == "finalize"
        ]
        rt.process(sqs_event(finalize[:1], ARN, "us-east-1"))
    finally:
        rt.close()
    done = DynamoBatchStore(batch_settings).get_batch(batch.id)
    assert done is not None
    assert done.status == "failed"
    assert done.errors is not None
    assert done.errors[0]["code"] == "input_file_unavailable"
    assert len(read_jsonl(batch_settings, done.output_file_id)) == 25
