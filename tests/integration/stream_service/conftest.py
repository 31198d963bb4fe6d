"""Real parts: stream-service processes sharing one moto DynamoDB server, and an
OpenAI-compatible upstream (started by the test) that records client disconnects."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from devstack.upstream import ScriptedUpstream
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer, ThreadServer, wait_http

MODEL = "upstream-model"


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.05, interval_s=0.05, default_tokens=20)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def node_env(
    aws_env: dict[str, str], upstream: tuple[ScriptedUpstream, ThreadServer]
) -> dict[str, str]:
    _, server = upstream
    # moto's threaded server may still be binding its port on a loaded machine: a node
    # that finds it closed exits on start
    wait_http(aws_env["DYNAMODB_ENDPOINT_URL"])
    return {
        **aws_env,
        "STREAMS_TABLE": f"streams-{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": f"{server.url}/v1",
        "OPENAI_MAX_RETRIES": "0",
        "KEEPALIVE_S": "1",
        "RESUME_GRACE_S": "1.5",
        "LEASE_TTL_S": "2",
        "POLL_INTERVAL_MS": "100",
        "DRAIN_S": "6",
        "MAX_STREAMS_PER_USER": "3",
        "STREAM_LIMIT_POLICY": "reject",
    }


StartNode = Callable[..., ProcessServer]


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes(node_env)


@pytest.fixture(scope="module")
def start_node(nodes: Nodes) -> StartNode:
    return nodes.start


@pytest.fixture(scope="module")
def cluster(nodes: Nodes) -> tuple[ProcessServer, ProcessServer]:
    return nodes.pair("node-a", "node-b")


@pytest.fixture(scope="module")
def tokens() -> DevTokens:
    return DevTokens(DEV_SECRET_DEFAULT, 3600)


def auth(tokens: DevTokens, user: str = "alice") -> dict[str, str]:
    return {"authorization": f"Bearer {tokens.mint(user)}"}


def create(
    node: ProcessServer, headers: dict[str, str], tokens_out: int = 20, **extra: Any
) -> httpx.Response:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": tokens_out,
        **extra,
    }
    return httpx.post(f"{node.url}/stream/v1/streams", json=body, headers=headers, timeout=10)
