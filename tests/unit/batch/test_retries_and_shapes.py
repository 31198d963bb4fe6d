"""Upstream retry policy (no sleeping), completion windows, and OpenAI wire shapes."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import InvalidRequest, RateLimited, UpstreamError
from core.providers.local import LocalProvider
from core.settings import Settings
from functions.batch.schemas import (
    BatchRecord,
    ItemResult,
    derived_file_id,
    new_batch_id,
    output_line,
    unexecuted_line,
)
from functions.batch.service import window_seconds
from functions.batch.worker import BatchWorker


class _NoStore:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"store.{name} must not be called")


def make_worker(**overrides: Any) -> tuple[BatchWorker, list[float]]:
    settings = Settings(
        batch_max_attempts=4, batch_backoff_base_s=1.0, batch_backoff_max_s=8.0, **overrides
    )
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    worker = BatchWorker(settings, _NoStore(), LocalProvider([], 0, 0), sleep=sleep)  # type: ignore[arg-type]
    return worker, slept


def failing(errors: list[Exception]) -> Any:
    async def call() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    return call


async def test_retries_429_honouring_retry_after_then_succeeds() -> None:
    worker, slept = make_worker()
    errors: list[Exception] = [RateLimited("slow down", retry_after_s=3), UpstreamError("boom")]
    assert await worker.with_retries(failing(errors)) == "ok"
    assert len(slept) == 2 and slept[0] >= 3.0  # Retry-After is a floor
    assert 0 <= slept[1] <= 2.0  # attempt 2: full jitter up to base * 2
    assert worker.stats.upstream_retries == 2


async def test_gives_up_after_max_attempts_and_caps_the_delay() -> None:
    worker, slept = make_worker()
    errors: list[Exception] = [RateLimited("no", retry_after_s=600) for _ in range(10)]
    with pytest.raises(RateLimited):
        await worker.with_retries(failing(errors))
    assert slept == [8.0, 8.0, 8.0]  # 4 attempts, each wait capped at BATCH_BACKOFF_MAX_S


async def test_non_retryable_errors_are_not_retried() -> None:
    worker, slept = make_worker()
    with pytest.raises(UpstreamError):
        await worker.with_retries(failing([UpstreamError("bad", retryable=False)]))
    with pytest.raises(InvalidRequest):
        await worker.with_retries(failing([InvalidRequest("bad body")]))
    assert slept == []


async def test_concurrency_is_bounded() -> None:
    import asyncio

    worker, _ = make_worker(batch_concurrency=3)
    running = peak = 0

    async def call() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.gather(*(worker.with_retries(call) for _ in range(20)))
    assert peak == 3


def test_completion_windows() -> None:
    s = Settings()
    assert window_seconds("24h", s) == 86400
    assert window_seconds("90m", s) == 5400
    for bad in ("", "24", "0h", "8d", "1s", "24 h"):
        with pytest.raises(InvalidRequest):
            window_seconds(bad, s)


def test_wire_shapes() -> None:
    batch_id = new_batch_id()
    assert batch_id.startswith("batch_") and len(batch_id) == 38
    assert derived_file_id(batch_id, "output") == derived_file_id(batch_id, "output")
    assert derived_file_id(batch_id, "output") != derived_file_id(batch_id, "error")
    item = ItemResult(3, "c3", True, 200, {"object": "chat.completion"}, "req_1")
    row = output_line(batch_id, item)
    assert row["custom_id"] == "c3" and row["error"] is None
    assert row["response"] == {"status_code": 200, "request_id": "req_1", "body": item.body}
    assert row["id"] == output_line(batch_id, item)["id"]  # stable across re-finalization
    gone = unexecuted_line(batch_id, 4, "c4", "batch_expired")
    assert gone["response"] is None and gone["error"]["code"] == "batch_expired"
    record = BatchRecord(
        id=batch_id,
        owner="a",
        status="in_progress",
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        input_key="files/file-x",
        completion_window="24h",
        created_at=10,
        deadline=20,
        total=5,
        completed=2,
        failed=1,
        timestamps={"in_progress_at": 10},
    )
    shape = record.to_openai()
    assert shape["request_counts"] == {"total": 5, "completed": 2, "failed": 1}
    assert shape["expires_at"] == 20 and shape["in_progress_at"] == 10
    assert shape["completed_at"] is None and shape["errors"] is None
