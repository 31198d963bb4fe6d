"""The ``openai`` provider against an OpenAI-compatible server started by the test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from core.errors import NotFound
from core.providers.base import Finish, TokenDelta
from core.providers.registry import build_provider
from core.schemas.chat import ChatCompletionRequest, ChatMessage
from core.settings import Settings
from devstack.upstream import ScriptedUpstream
from tests.support.servers import ThreadServer


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.01, interval_s=0.01)
    with ThreadServer(app) as server:
        yield app, server


def _provider(server: ThreadServer) -> object:
    settings = Settings(
        llm_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=f"{server.url}/v1",
        openai_max_retries=0,
    )
    return build_provider(settings)


def _request(model: str = "upstream-model", max_tokens: int = 5) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=model, messages=[ChatMessage(role="user", content="hi")], max_tokens=max_tokens
    )


async def test_stream_and_complete(upstream: tuple[ScriptedUpstream, ThreadServer]) -> None:
    app, server = upstream
    provider = _provider(server)
    events = [e async for e in provider.stream(_request())]  # type: ignore[attr-defined]
    texts = [e.text for e in events if isinstance(e, TokenDelta)]
    assert "".join(texts) == app.expected_text(5)
    assert isinstance(events[-1], Finish)
    assert events[-1].usage.completion_tokens == 5
    assert app.last_request is not None and app.last_request["stream_options"] == {
        "include_usage": True
    }
    result = await provider.complete(_request(max_tokens=3))  # type: ignore[attr-defined]
    assert result.text == app.expected_text(3)
    assert await provider.list_models() == ["upstream-model"]  # type: ignore[attr-defined]


async def test_cancel_mid_stream_closes_upstream_connection(
    upstream: tuple[ScriptedUpstream, ThreadServer],
) -> None:
    app, server = upstream
    provider = _provider(server)
    got: list[str] = []

    async def consume() -> None:
        async for event in provider.stream(_request(max_tokens=10_000)):  # type: ignore[attr-defined]
            if isinstance(event, TokenDelta):
                got.append(event.text)

    task = asyncio.create_task(consume())
    while len(got) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):  # the server notices within a moment
        if app.stats.disconnects:
            break
        await asyncio.sleep(0.01)
    assert app.stats.disconnects == 1
    assert app.stats.streams_completed == 0
    assert app.stats.active == 0


async def test_unknown_model_is_not_found(upstream: tuple[ScriptedUpstream, ThreadServer]) -> None:
    _, server = upstream
    with pytest.raises(NotFound):
        async for _ in _provider(server).stream(_request(model="missing")):  # type: ignore[attr-defined]
            pass
