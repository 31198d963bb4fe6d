"""Real parts for agent loops: the scripted OpenAI-compatible upstream, the REST app and a
stream-service node in front of it (LLM_PROVIDER=openai), and the same two apps on the
local model; clients are the official ``openai`` SDKs for Python and Node."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from core.auth.dev import DevTokens
from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import DEV_SECRET_DEFAULT, Settings
from devstack.upstream import ScriptedUpstream
from functions.api.app import create_app
from tests.support.servers import ProcessServer, ThreadServer

UPSTREAM_MODEL = "upstream-model"
LOCAL_MODEL = "local-model"


@dataclass(frozen=True)
class Target:
    """One place a client sends chat requests to: its base URL, model, and the upstream
    behind it (None for the local model)."""

    name: str
    base_url: str
    model: str
    upstream: ScriptedUpstream | None


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.01, interval_s=0.003, default_tokens=8)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def token() -> str:
    return DevTokens(DEV_SECRET_DEFAULT, 3600).mint("agent-user")


def _settings(aws_env: dict[str, str], **overrides: object) -> Settings:
    settings = Settings(
        dynamodb_endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
        s3_endpoint_url=aws_env["S3_ENDPOINT_URL"],
        sqs_endpoint_url=aws_env["SQS_ENDPOINT_URL"],
        local_ttft_ms=5,
        local_token_delay_ms=1,
        **overrides,  # type: ignore[arg-type]
    )
    ensure_tables(clients.dynamodb(settings), settings)
    return settings


@pytest.fixture(scope="module")
def targets(
    aws_env: dict[str, str], upstream: tuple[ScriptedUpstream, ThreadServer]
) -> Iterator[dict[str, Target]]:
    app, server = upstream
    openai_env = {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": f"{server.url}/v1",
        "OPENAI_MAX_RETRIES": "0",
    }
    local_env = {"LLM_PROVIDER": "local", "LOCAL_TTFT_MS": "5", "LOCAL_TOKEN_DELAY_MS": "1"}
    rest_upstream = ThreadServer(
        create_app(
            _settings(
                aws_env,
                llm_provider="openai",
                openai_api_key="sk-test",
                openai_base_url=f"{server.url}/v1",
                openai_max_retries=0,
            )
        )
    )
    rest_local = ThreadServer(create_app(_settings(aws_env, llm_provider="local")))
    common = {**aws_env, "STREAMS_TABLE": f"streams-{uuid.uuid4().hex[:8]}", "KEEPALIVE_S": "1"}
    node_upstream = ProcessServer(
        "stream_service", {**common, **openai_env}, health="/stream/healthz"
    )
    node_local = ProcessServer("stream_service", {**common, **local_env}, health="/stream/healthz")
    with rest_upstream, rest_local, node_upstream, node_local:
        yield {
            target.name: target
            for target in (
                Target("rest-upstream", f"{rest_upstream.url}/api/v1", UPSTREAM_MODEL, app),
                Target("rest-local", f"{rest_local.url}/api/v1", LOCAL_MODEL, None),
                Target("stream-upstream", f"{node_upstream.url}/stream/v1", UPSTREAM_MODEL, app),
                Target("stream-local", f"{node_local.url}/stream/v1", LOCAL_MODEL, None),
            )
        }
