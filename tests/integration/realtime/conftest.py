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
from devstack.realtime_upstream import RealtimeUpstream, RealtimeUpstreamServer
from tests.support.servers import ProcessServer, wait_http
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


def start_node(env: dict[str, str]) -> ProcessServer:
    """A stream-service node; on a loaded machine (2 shared cores) its start may take longer
    than ProcessServer's own 20 s wait."""
    node = ProcessServer("stream_service", env, health="/stream/healthz")
    try:
        node.start()
    except TimeoutError:
        assert node.proc is not None and node.proc.poll() is None, "the node exited"
        wait_http(node.url + node.health, timeout=60)
    return node


@pytest.fixture(scope="package")
def voice_node() -> Iterator[ProcessServer]:
    require_espeak()
    node = start_node(VOICE_ENV)
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


# The relay (LLM_PROVIDER=openai) against a scripted upstream realtime server.
SERVER_KEY = "sk-server-key-0001"
RELAY_GRACE_S = 1.5


def relay_env(base_url: str) -> dict[str, str]:
    return {
        "STREAM_STORE": "memory",
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": SERVER_KEY,
        "OPENAI_BASE_URL": base_url,
        "REALTIME_RESUME_GRACE_S": str(RELAY_GRACE_S),
    }


@pytest.fixture(scope="package")
def upstream() -> Iterator[tuple[RealtimeUpstream, str]]:
    fake = RealtimeUpstream(audio_frames=25)
    with RealtimeUpstreamServer(fake) as server:
        yield fake, server.url


@pytest.fixture(scope="package")
def relay_node(upstream: tuple[RealtimeUpstream, str]) -> Iterator[ProcessServer]:
    node = start_node(relay_env(upstream[1]))
    yield node
    node.stop()
