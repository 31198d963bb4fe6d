"""Ids are checked at the edge: a malformed one is a 404 in OpenAI's shape, never a store call.

The app runs against a DynamoDB/S3 endpoint nothing listens on, so any store call would
be a 5xx: a 404 proves the request never got that far.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from core.auth.dev import DevTokens
from core.settings import Settings
from functions.api.app import create_app
from tests.support.servers import ThreadServer

LONG = "a" * 3000
DEAD = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def no_store_api() -> Iterator[ThreadServer]:
    settings = Settings(
        dynamodb_endpoint_url=DEAD,
        s3_endpoint_url=DEAD,
        sqs_endpoint_url=DEAD,
        batch_queue_url=f"{DEAD}/queue/q",
    )
    with ThreadServer(create_app(settings)) as server:
        yield server


@pytest.fixture(scope="module")
def headers() -> dict[str, str]:
    token = DevTokens(Settings().auth_dev_secret.get_secret_value(), 600).mint("alice")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path", "noun"),
    [
        ("GET", f"/api/v1/files/file-{LONG}", "File object"),
        ("GET", f"/api/v1/files/{LONG}/content", "File object"),
        ("DELETE", "/api/v1/files/file-0123", "File object"),
        ("GET", f"/api/v1/batches/batch_{LONG}", "Batch object"),
        ("POST", "/api/v1/batches/batch_%0A0123/cancel", "Batch object"),
        ("GET", f"/api/v1/models/{LONG}", "model"),
    ],
)
def test_malformed_ids_are_404_without_a_store_call(
    no_store_api: ThreadServer, headers: dict[str, str], method: str, path: str, noun: str
) -> None:
    response = httpx.request(method, no_store_api.url + path, headers=headers, timeout=10)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert noun in error["message"]
    assert len(error["message"]) < 200  # a 3,000-character id is not echoed whole


def test_malformed_input_file_id_of_a_batch_is_404_without_a_store_call(
    no_store_api: ThreadServer, headers: dict[str, str]
) -> None:
    body = {"input_file_id": LONG, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    response = httpx.post(
        f"{no_store_api.url}/api/v1/batches", json=body, headers=headers, timeout=10
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"]["param"] == "input_file_id"


def test_a_well_formed_id_does_reach_the_store(
    no_store_api: ThreadServer, headers: dict[str, str]
) -> None:
    """The control: the same app with a valid-looking id does call the (dead) store."""
    response = httpx.get(
        f"{no_store_api.url}/api/v1/batches/batch_{'0' * 32}", headers=headers, timeout=30
    )
    assert response.status_code >= 500
    assert "error" in response.json()
