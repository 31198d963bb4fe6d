"""Batch fixtures: fast settings with a fresh queue (and DLQ) per test, the REST app on real
uvicorn, and the local polling worker, all against the session's moto server over HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from core.settings import Settings
from devstack.batch_worker import LocalBatchWorker, ensure_local_batch_resources
from functions.api.app import create_app
from tests.support.servers import ThreadServer


def fast(settings: Settings, **overrides: Any) -> Settings:
    base = settings.model_copy(
        update={
            "local_ttft_ms": 0.0,
            "local_token_delay_ms": 0.0,
            "batch_status_check_s": 0.0,
            "batch_backoff_base_s": 0.01,
            "batch_backoff_max_s": 0.05,
            **overrides,
        }
    )
    return ensure_local_batch_resources(
        base, queue_name=f"rtai-batch-{uuid.uuid4().hex[:10]}", visibility_timeout_s=2
    )


@pytest.fixture
def batch_settings(settings: Settings) -> Settings:
    return fast(settings)


@pytest.fixture
def api(batch_settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(batch_settings)) as server:
        yield server


@pytest.fixture
def worker(batch_settings: Settings) -> Iterator[LocalBatchWorker]:
    with LocalBatchWorker(batch_settings, wait_s=1, sweep_every_s=1.0) as w:
        yield w


@pytest.fixture
def client(api: ThreadServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{api.url}/api/v1", api_key=token, max_retries=0)


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    import json

    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_line(
    custom_id: str, content: str, model: str = "local-model", **body: Any
) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}], **body},
    }


def wait_for(
    client: openai.OpenAI, batch_id: str, done: Callable[[Any], bool], timeout: float = 30.0
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch did not finish in {timeout}s: {batch}")
        time.sleep(0.1)


TERMINAL = {"completed", "failed", "expired", "cancelled"}
