"""Property-based fuzzing of the public contract (schemathesis over HTTP, real servers).

Every operation of the REST app and of the stream service gets generated input with a
valid bearer token: no response may be a 5xx, and every 4xx is in OpenAI's error shape
(tests/integration/api/openapi_contract.py). Hypothesis also drives the SSE resume
inputs (``Last-Event-ID`` header and ``last_event_id`` query) against a finished stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT, Settings
from devstack.batch_worker import ensure_local_batch_resources
from functions.api.app import create_app
from tests.integration.api.openapi_contract import rest_api, stream_service
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import read_sse

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.response_schema_conformance,
]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure reproduces
    suppress_health_check=list(HealthCheck),
)
TOKEN = DevTokens(DEV_SECRET_DEFAULT, 3600).mint("fuzzer")
AUTH = {"Authorization": f"Bearer {TOKEN}"}

rest_schema = schemathesis.openapi.from_dict(rest_api())
stream_schema = schemathesis.openapi.from_dict(stream_service())


@pytest.fixture(scope="module")
def rest_url(aws_env: dict[str, str]) -> Iterator[str]:
    settings_ = ensure_local_batch_resources(
        Settings(
            dynamodb_endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
            s3_endpoint_url=aws_env["S3_ENDPOINT_URL"],
            sqs_endpoint_url=aws_env["SQS_ENDPOINT_URL"],
            local_ttft_ms=0,
            local_token_delay_ms=0,
        ),
        queue_name="rtai-fuzz",
    )
    from core.aws import clients
    from core.aws.tables import ensure_tables

    ensure_tables(clients.dynamodb(settings_), settings_)
    with ThreadServer(create_app(settings_)) as server:
        yield server.url


@pytest.fixture(scope="module")
def stream_url() -> Iterator[str]:
    env = {
        "STREAM_STORE": "memory",
        "AUTH_MODE": "dev",
        "LLM_PROVIDER": "local",
        "LOCAL_TTFT_MS": "0",
        "LOCAL_TOKEN_DELAY_MS": "0",
        "MAX_STREAMS_PER_USER": "1000",
    }
    with ProcessServer("stream_service", env, health="/stream/healthz") as node:
        yield node.url


@rest_schema.parametrize()
@FUZZ
def test_rest_api_never_5xx_and_errors_keep_the_contract(
    case: schemathesis.Case, rest_url: str
) -> None:
    case.call_and_validate(base_url=rest_url, headers=AUTH, checks=CHECKS, timeout=30)


@stream_schema.parametrize()
@FUZZ
def test_stream_service_never_5xx_and_errors_keep_the_contract(
    case: schemathesis.Case, stream_url: str
) -> None:
    case.call_and_validate(base_url=stream_url, headers=AUTH, checks=CHECKS, timeout=30)


@pytest.fixture(scope="module")
def finished_stream(stream_url: str) -> tuple[str, list[int]]:
    created = httpx.post(
        f"{stream_url}/stream/v1/streams",
        json={"model": "local-model", "messages": [{"role": "user", "content": "/tokens 12"}]},
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    stream_id = created.json()["id"]
    whole = read_sse(f"{stream_url}/stream/v1/streams/{stream_id}/events", headers=AUTH)
    assert whole.last().event == "done"
    return stream_id, whole.ids


_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
RESUME_VALUES = st.one_of(
    st.integers(min_value=-5, max_value=40).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    _HEADER_TEXT,
)


@given(value=RESUME_VALUES, via_header=st.booleans())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_sse_resume_inputs(
    stream_url: str, finished_stream: tuple[str, list[int]], value: str, via_header: bool
) -> None:
    """Any Last-Event-ID: the events after it exactly (no gap, no duplicate), or a 400 in
    the contract's shape; never a 5xx."""
    stream_id, ids = finished_stream
    url = f"{stream_url}/stream/v1/streams/{stream_id}/events"
    if via_header:  # a header value has no surrounding whitespace on the wire
        value = value.strip()
        result = read_sse(url, headers={**AUTH, "Last-Event-ID": value})
    else:
        result = read_sse(f"{url}?{urlencode({'last_event_id': value})}", headers=AUTH)
    assert result.status < 500, result.body
    text = value.strip()
    if result.status == 200:
        assert text.isdigit() or text == "", f"{value!r} was accepted"
        after = int(text) if text else 0  # an empty one is no resume: from the start
        assert result.ids == [i for i in ids if i > after]  # no gap, no duplicate
    else:
        assert result.status == 400, result.body
        assert json.loads(result.body)["error"]["code"] == "invalid_last_event_id"
        canonical = value.isdigit() and str(int(value)) == value and int(value) <= ids[-1]
        assert not canonical, f"the valid id {value!r} was refused"
