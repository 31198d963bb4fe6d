"""The Batch API over HTTP with the official SDK: cancel, idempotency, bad input, ownership."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from core.auth.dev import DevTokens
from core.settings import Settings
from devstack.batch_worker import LocalBatchWorker
from functions.api.app import create_app
from tests.integration.batch.conftest import TERMINAL, chat_line, fast, jsonl, wait_for
from tests.support.servers import ThreadServer


def upload(client: openai.OpenAI, lines: list[dict[str, object]]) -> str:
    return client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch").id


def create(client: openai.OpenAI, file_id: str, **kwargs: object) -> openai.types.Batch:
    return client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def slow_settings(settings: Settings) -> Settings:
    # Slow enough to cancel mid-run: 2 lines at a time, ~30 ms each.
    return fast(settings, local_ttft_ms=25.0, local_token_delay_ms=1.0, batch_concurrency=2)


@pytest.fixture
def slow_client(slow_settings: Settings, token: str) -> Iterator[openai.OpenAI]:
    with (
        ThreadServer(create_app(slow_settings)) as server,
        LocalBatchWorker(slow_settings, wait_s=1),
    ):
        yield openai.OpenAI(base_url=f"{server.url}/api/v1", api_key=token, max_retries=0)


def test_cancel_mid_run_ends_cancelled_with_exact_counts(slow_client: openai.OpenAI) -> None:
    lines = [chat_line(f"r{i}", f"question {i}", max_tokens=3) for i in range(200)]
    batch = create(slow_client, upload(slow_client, lines))
    wait_for(slow_client, batch.id, lambda b: b.request_counts.completed >= 10)
    cancelling = slow_client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    assert cancelling.cancelling_at is not None
    done = wait_for(slow_client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "cancelled" and done.cancelled_at is not None
    counts = done.request_counts
    assert counts is not None and counts.total == 200
    assert 10 <= counts.completed < 200 and counts.failed == 0

    out = slow_client.files.content(done.output_file_id).text.splitlines()
    errors = [
        json.loads(x) for x in slow_client.files.content(done.error_file_id).text.splitlines()
    ]
    assert len(out) == counts.completed
    assert len(errors) == 200 - counts.completed
    assert all(e["error"]["code"] == "batch_cancelled" and e["response"] is None for e in errors)
    ids = {json.loads(x)["custom_id"] for x in out} | {e["custom_id"] for e in errors}
    assert ids == {f"r{i}" for i in range(200)}
    # Cancelling again is harmless; the batch stays cancelled.
    assert slow_client.batches.cancel(batch.id).status == "cancelled"


def test_input_file_in_use_cannot_be_deleted_until_its_batch_ends(
    slow_client: openai.OpenAI,
) -> None:
    lines = [chat_line(f"r{i}", f"question {i}", max_tokens=3) for i in range(200)]
    file_id = upload(slow_client, lines)
    batch = create(slow_client, file_id)
    with pytest.raises(openai.ConflictError) as refused:
        slow_client.files.delete(file_id)
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "file_in_use"
    slow_client.batches.cancel(batch.id)
    done = wait_for(slow_client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "cancelled"  # it ran to its end: nothing was read from a gone file
    assert slow_client.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        slow_client.files.retrieve(file_id)


def test_files_filtered_by_purpose_fill_their_page(client: openai.OpenAI, worker: object) -> None:
    """Filtering happens before paging: output files newer than the inputs do not leave
    a page of `purpose=batch` empty."""
    inputs = [upload(client, [chat_line(f"p{i}", "x")]) for i in range(2)]
    outputs = []
    for file_id in inputs:  # each batch adds output files, newer than both inputs
        batch = create(client, file_id)
        done = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
        outputs.append(done.output_file_id)
    assert all(outputs)
    page = client.files.list(purpose="batch", limit=2)
    assert [f.id for f in page.data] == inputs[::-1]  # newest first, the outputs skipped
    assert page.has_more  # this user's inputs of earlier tests
    outputs_page = client.files.list(purpose="batch_output", limit=2)
    assert [f.id for f in outputs_page.data] == outputs[::-1]


@pytest.mark.filterwarnings("ignore:Couldn't determine the remaining time")  # no Lambda here
def test_idempotent_resubmission_creates_one_batch(client: openai.OpenAI) -> None:
    file_id = upload(client, [chat_line("a", "hi", max_tokens=2)])
    headers = {"Idempotency-Key": "nightly-2026-11-24"}
    first = create(client, file_id, extra_headers=headers)
    second = create(client, file_id, extra_headers=headers)
    assert first.id == second.id
    assert [b.id for b in client.batches.list(limit=100)].count(first.id) == 1
    other = create(client, file_id, extra_headers={"Idempotency-Key": "another"})
    assert other.id != first.id
    with pytest.raises(openai.BadRequestError) as reused:
        create(client, file_id, extra_headers=headers, metadata={"changed": "yes"})
    assert reused.value.code == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("content", "line", "code"),
    [
        (
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
            b"{not json\n",
            2,
            "invalid_json_line",
        ),
        (
            jsonl([chat_line("a", "x"), chat_line("b", "y"), chat_line("a", "z")]),
            3,
            "duplicate_custom_id",
        ),
        (
            jsonl([chat_line("a", "x"), {**chat_line("b", "y"), "url": "/v1/embeddings"}]),
            2,
            "invalid_url",
        ),
        (jsonl([{**chat_line("a", "x"), "method": "GET"}]), 1, "invalid_method"),
        (
            jsonl([{"method": "POST", "url": "/v1/chat/completions", "body": {}}]),
            1,
            "missing_custom_id",
        ),
        (jsonl([{**chat_line("a", "x"), "body": "text"}]), 1, "invalid_body"),
        (b"\n\n" + jsonl([chat_line("a", "x")]) + b"[1, 2]\n", 4, "invalid_request_line"),
        (jsonl([chat_line("a", "x")]) + b"\xff\xfe\n", 2, "invalid_encoding"),
    ],
)
def test_malformed_jsonl_is_rejected_naming_the_line(
    client: openai.OpenAI, content: bytes, line: int, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.files.create(file=("bad.jsonl", content), purpose="batch")
    assert bad.value.code == code
    assert f"- Line {line}: " in bad.value.message, bad.value.message
    assert bad.value.param == "file"  # type: ignore[attr-defined]


def test_limits_are_4xx(settings: Settings, token: str) -> None:
    tight = fast(settings, max_batch_lines=3, max_upload_bytes=2000)
    with ThreadServer(create_app(tight)) as server:
        client = openai.OpenAI(base_url=f"{server.url}/api/v1", api_key=token, max_retries=0)
        with pytest.raises(openai.BadRequestError) as many:
            upload(client, [chat_line(f"c{i}", "x") for i in range(4)])
        assert many.value.code == "too_many_requests" and "line 4" in many.value.message
        with pytest.raises(openai.APIStatusError) as big:
            upload(client, [chat_line("big", "x" * 5000)])
        assert big.value.status_code == 413 and "/api/v1/files/uploads" in big.value.message
        with pytest.raises(openai.BadRequestError) as empty:
            client.files.create(file=("e.jsonl", b"\n"), purpose="batch")
        assert empty.value.code == "empty_file"
        with pytest.raises(openai.BadRequestError) as purpose:
            client.files.create(file=("e.jsonl", jsonl([chat_line("a", "x")])), purpose="fine-tune")
        assert "batch" in purpose.value.message
        file_id = upload(client, [chat_line("a", "x")])
        with pytest.raises(openai.BadRequestError) as endpoint:
            client.batches.create(
                input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
            )
        assert endpoint.value.param == "endpoint"  # type: ignore[attr-defined]
        with pytest.raises(openai.BadRequestError) as window:
            client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="forever",  # type: ignore[arg-type]
            )
        assert window.value.param == "completion_window"  # type: ignore[attr-defined]
        with pytest.raises(openai.BadRequestError):
            client.batches.list(limit=1000)
        raw = httpx.post(
            f"{server.url}/api/v1/batches",
            content=b"{]",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"


def test_bad_lines_fail_alone(client: openai.OpenAI, worker: LocalBatchWorker) -> None:
    lines = [
        chat_line("ok-1", "hello", max_tokens=3),
        chat_line("unknown-model", "hello", model="no-such-model"),
        {**chat_line("bad-body", "x"), "body": {"model": "local-model", "messages": "nope"}},
        chat_line("keeps-failing", "/fail now"),
        chat_line("streaming", "x", stream=True),
        chat_line("ok-2", "bye", max_tokens=3),
    ]
    batch = create(client, upload(client, lines))
    done = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 4)
    out = {
        json.loads(x)["custom_id"]
        for x in client.files.content(done.output_file_id).text.splitlines()
    }
    assert out == {"ok-1", "ok-2"}
    errors = {
        (row := json.loads(x))["custom_id"]: row["response"]
        for x in client.files.content(done.error_file_id).text.splitlines()
    }
    assert errors["unknown-model"]["status_code"] == 404
    assert errors["unknown-model"]["body"]["error"]["code"] == "model_not_found"
    assert errors["bad-body"]["status_code"] == 400
    assert errors["keeps-failing"]["status_code"] == 502  # retried, then given up
    assert errors["streaming"]["status_code"] == 400
    assert worker.runtime.worker.stats.upstream_retries >= 4  # BATCH_MAX_ATTEMPTS=5


def test_ownership_paging_and_404s(api: ThreadServer, dev_tokens: DevTokens) -> None:
    owner = f"carol-{uuid.uuid4().hex[:8]}"  # a fresh user: the moto server is session-wide
    client = openai.OpenAI(
        base_url=f"{api.url}/api/v1", api_key=dev_tokens.mint(owner), max_retries=0
    )
    file_id = upload(client, [chat_line("a", "x")])
    ids = [create(client, file_id).id for _ in range(3)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
    rest = client.batches.list(limit=2, after=first.data[-1].id)
    assert [b.id for b in rest.data] == [ids[0]] and not rest.has_more
    assert [b.id for b in client.batches.list(limit=10)] == ids[::-1]  # auto-paging

    bob = openai.OpenAI(base_url=f"{api.url}/api/v1", api_key=dev_tokens.mint("bob"), max_retries=0)
    for call in (
        lambda: bob.batches.retrieve(ids[0]),
        lambda: bob.batches.cancel(ids[0]),
        lambda: bob.files.retrieve(file_id),
        lambda: bob.files.content(file_id),
        lambda: create(bob, file_id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert bob.batches.list().data == []
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_does_not_exist")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{api.url}/api/v1", api_key="x", max_retries=0).batches.list()
    assert client.files.content(file_id).text == jsonl([chat_line("a", "x")]).decode()
    # The input of batches that have not ended cannot go (test_input_file_in_use_...).
    with pytest.raises(openai.ConflictError):
        client.files.delete(file_id)
    assert client.files.retrieve(file_id).id == file_id
