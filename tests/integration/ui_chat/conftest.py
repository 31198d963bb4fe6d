"""Real parts for the AI SDK's chat: stream-service processes (the local model) sharing one
moto DynamoDB server, driven by the `ai` package from npm under the pinned Node."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.support.node import run_node
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer

MODEL = "local-model"


@pytest.fixture(scope="module")
def node_env(aws_env: dict[str, str]) -> dict[str, str]:
    return {
        **aws_env,
        "STREAMS_TABLE": f"streams-ui-{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "local",
        "LOCAL_TTFT_MS": "50",
        "LOCAL_TOKEN_DELAY_MS": "25",
        "KEEPALIVE_S": "1",
        "RESUME_GRACE_S": "15",  # an aborted read leaves the reply running, to be resumed
        "LEASE_TTL_S": "2",
        "POLL_INTERVAL_MS": "100",
        "DRAIN_S": "6",
        "MAX_STREAMS_PER_USER": "3",
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
    return nodes.pair("ui-a", "ui-b")


@pytest.fixture(scope="module")
def tokens() -> DevTokens:
    return DevTokens(DEV_SECRET_DEFAULT, 3600)


def chat_id() -> str:
    return f"chat-{uuid.uuid4().hex[:12]}"


def ui(scenario: str, timeout: float = 90, **args: Any) -> Any:
    """Run one scenario of tests/node/ui_chat.mjs (the real `ai` package)."""
    arg = json.dumps({"scenario": scenario, "model": MODEL, **args})
    return run_node("ui_chat.mjs", arg, timeout=timeout)


def echo(words: int) -> tuple[str, str]:
    """A prompt the local model answers word for word, and that answer."""
    text = " ".join(f"word{i}" for i in range(words))
    return f"/echo {text}", text


def types(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["type"] for c in chunks]
