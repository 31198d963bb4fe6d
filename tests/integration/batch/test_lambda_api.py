"""The batch endpoints through Mangum, as API Gateway HTTP API (v2) events: a multipart
upload arrives base64-encoded, and Idempotency-Key uses the real Lambda context."""

from __future__ import annotations

import base64
import json
from typing import Any

from mangum import Mangum

from core.settings import Settings
from functions.api.app import create_app
from tests.integration.batch.conftest import chat_line, jsonl
from tests.support.lambda_events import FakeContext, http_api_event


def event(
    method: str, path: str, token: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return http_api_event(method, path, body, token=token, headers=headers, b64=True)


def test_upload_and_idempotent_create_through_mangum(batch_settings: Settings, token: str) -> None:
    lambda_handler = Mangum(create_app(batch_settings), lifespan="off")  # type: ignore[arg-type]
    boundary = "rtaiboundary"
    content = jsonl([chat_line("a", "hi"), chat_line("b", "there")])
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = lambda_handler(
        event(
            "POST",
            "/api/v1/files",
            token,
            multipart,
            {"content-type": f"multipart/form-data; boundary={boundary}"},
        ),
        FakeContext(),  # type: ignore[arg-type]
    )
    assert reply["statusCode"] == 200, reply
    file_obj = json.loads(reply["body"])
    assert file_obj["bytes"] == len(content) and file_obj["filename"] == "in.jsonl"

    body = json.dumps(
        {
            "input_file_id": file_obj["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
    ).encode()
    headers = {"content-type": "application/json", "idempotency-key": "lambda-1"}
    ids = set()
    for _ in range(2):
        made = lambda_handler(event("POST", "/api/v1/batches", token, body, headers), FakeContext())  # type: ignore[arg-type]
        assert made["statusCode"] == 200, made
        ids.add(json.loads(made["body"])["id"])
    assert len(ids) == 1

    content_reply = lambda_handler(
        event("GET", f"/api/v1/files/{file_obj['id']}/content", token),
        FakeContext(),  # type: ignore[arg-type]
    )
    assert content_reply["statusCode"] == 200
    assert content_reply["headers"]["content-type"].startswith("application/jsonl")
    raw = content_reply["body"]
    got = base64.b64decode(raw) if content_reply["isBase64Encoded"] else raw.encode()
    assert got == content
