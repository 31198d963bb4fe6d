"""Real parts for voice: a stream-service node (a real uvicorn process) with the local
stand-in, the official SDK's realtime client, and speech made by espeak-ng."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from openai import AsyncOpenAI

from core.auth.dev import DevTokens
from core.auth.realtime_keys import RealtimeKeys
from core.settings import DEV_SECRET_DEFAULT
from tests.support.servers import ProcessServer
from tests.support.speech import require_espeak

MODEL = "gpt-realtime"
GRACE_S = 2.0

# The node's voice settings for these tests: a short grace, a rate limit the bad-event test
# can reach, replies paced at real time (REALTIME_LOCAL_PACE stays 1).
VOICE_ENV = {
    "STREAM_STORE": "memory",
    "LLM_PROVIDER": "local",
    "REALTIME_RESUME_GRACE_S": str(GRACE_S),
    "REALTIME_MAX_EVENTS_PER_S": "20",
    "REALTIME_MAX_SESSIONS_PER_USER": "3",
}


@pytest.fixture(scope="package")
def voice_node() -> Iterator[ProcessServer]:
    require_espeak()
    node = ProcessServer("stream_service", VOICE_ENV, health="/stream/healthz").start()
    yield node
    node.stop()


@pytest.fixture(scope="package")
def tokens() -> DevTokens:
    return DevTokens(DEV_SECRET_DEFAULT, 3600)


@pytest.fixture(scope="package")
def keys() -> RealtimeKeys:
    return RealtimeKeys(DEV_SECRET_DEFAULT)  # URL_TOKEN_SECRET unset: the dev secret signs


def ws_base(node: ProcessServer) -> str:
    return node.url.replace("http://", "ws://") + "/stream/v1"


Connect = Callable[..., AbstractAsyncContextManager[Any]]


@pytest.fixture
def connect(voice_node: ProcessServer, tokens: DevTokens) -> Connect:
    """``async with connect(user=...) as conn``: the SDK's realtime client on the node."""

    @asynccontextmanager
    async def open_(
        user: str = "alice", node: ProcessServer | None = None, **query: str
    ) -> AsyncIterator[Any]:
        target = node or voice_node
        client = AsyncOpenAI(
            api_key=tokens.mint(user),
            base_url=target.url + "/api/v1",
            websocket_base_url=ws_base(target),
        )
        async with client.realtime.connect(model=MODEL, extra_query=query) as conn:
            yield conn

    return open_
