"""The official ``openai`` SDK runs a batch end to end against the REST app + local worker."""

from __future__ import annotations

import json
import time

import openai

from core.providers.local import script_reply
from core.schemas.chat import ChatCompletionRequest, ChatMessage
from devstack.batch_worker import LocalBatchWorker
from tests.integration.batch.conftest import TERMINAL, chat_line, jsonl, wait_for


def expected(content: str, max_tokens: int) -> tuple[str, str]:
    tokens, reason = script_reply(
        ChatCompletionRequest(
            model="local-model",
            messages=[ChatMessage(role="user", content=content)],
            max_tokens=max_tokens,
        )
    )
    return "".join(tokens), reason


def test_sdk_200_line_batch_end_to_end(client: openai.OpenAI, worker: LocalBatchWorker) -> None:
    lines = [
        chat_line(f"req-{i}", f"Tell me fact number {i}.", max_tokens=3 + i % 9) for i in range(200)
    ]
    started = time.monotonic()
    uploaded = client.files.create(file=("questions.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.object == "file"
    assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes

    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status in ("validating", "in_progress")
    assert batch.request_counts is not None and batch.request_counts.total == 200
    done = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    elapsed = time.monotonic() - started
    print(f"200-line batch: {elapsed:.2f}s end to end")

    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (200, 200)
    assert done.request_counts.failed == 0
    assert done.error_file_id is None and done.output_file_id
    assert done.metadata == {"job": "nightly"}
    assert done.model == "local-model"
    for stamp in ("created_at", "in_progress_at", "finalizing_at", "completed_at", "expires_at"):
        assert isinstance(getattr(done, stamp), int), stamp

    out = client.files.content(done.output_file_id).text.splitlines()
    assert len(out) == 200
    by_id = {}
    for raw in out:
        row = json.loads(raw)
        assert row["id"].startswith("batch_req_") and row["error"] is None
        assert row["response"]["status_code"] == 200
        by_id[row["custom_id"]] = row["response"]["body"]
    assert sorted(by_id) == sorted(f"req-{i}" for i in range(200))
    output_tokens = 0
    for i in range(200):
        body = by_id[f"req-{i}"]
        text, reason = expected(f"Tell me fact number {i}.", 3 + i % 9)
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == text
        assert body["choices"][0]["finish_reason"] == reason
        output_tokens += body["usage"]["completion_tokens"]
    assert done.usage is not None and done.usage.output_tokens == output_tokens

    page = client.batches.list(limit=5)
    assert page.data[0].id == batch.id
