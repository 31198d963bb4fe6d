"""The ``openai`` provider against an OpenAI-compatible server started by the test, on
each of its HTTP transports (httpx, the SDK's default; push, the stream service's; aiohttp,
for proxies)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from core.errors import NotFound, UpstreamError
from core.providers.base import Finish, TokenDelta
from core.providers.registry import build_provider
from core.schemas.chat import ChatCompletionRequest, ChatMessage
from core.settings import Settings
from devstack.upstream import ScriptedUpstream
from tests.support.servers import ThreadServer


@pytest.fixture(params=["httpx", "aiohttp", "push"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.01, interval_s=0.01, failures={"flaky-model": [503]})
    app.models = ("upstream-model", "flaky-model")
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture
async def make_provider(transport: str) -> AsyncIterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(url: str, retries: int = 0) -> Any:
        settings = Settings(
            llm_provider="openai",
            openai_api_key="sk-test",
            openai_base_url=f"{url}/v1",
            openai_max_retries=retries,
            openai_http_client=transport,  # type: ignore[arg-type]
        )
        made.append(build_provider(settings))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


def _request(model: str = "upstream-model", max_tokens: int = 5) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=model, messages=[ChatMessage(role="user", content="hi")], max_tokens=max_tokens
    )


async def test_stream_and_complete(
    upstream: tuple[ScriptedUpstream, ThreadServer], make_provider: Callable[..., Any]
) -> None:
    app, server = upstream
    provider = make_provider(server.url)
    events = [e async for e in provider.stream(_request())]  # type: ignore[attr-defined]
    texts = [e.text for e in events if isinstance(e, TokenDelta)]
    assert "".join(texts) == app.expected_text(5)
    assert isinstance(events[-1], Finish)
    assert events[-1].usage.completion_tokens == 5
    # the request goes out whole: model, messages and options as the client sent them
    assert app.last_request == {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    result = await provider.complete(_request(max_tokens=3))  # type: ignore[attr-defined]
    assert result.text == app.expected_text(3)
    assert await provider.list_models() == ["upstream-model", "flaky-model"]


async def test_streams_starting_at_once_share_one_model_list_fetch(
    upstream: tuple[ScriptedUpstream, ThreadServer], make_provider: Callable[..., Any]
) -> None:
    app, server = upstream
    provider = make_provider(server.url)
    # 200 streams start at once on a cold cache: one GET /v1/models, not 200
    checks = [provider.require_model("upstream-model") for _ in range(200)]
    await asyncio.gather(*checks)
    assert app.stats.model_lists == 1
    # one of them leaving mid-fetch (its client gone) fails no other
    provider._cached = None
    first = asyncio.ensure_future(provider.has_model("flaky-model"))
    rest = [asyncio.ensure_future(provider.has_model("flaky-model")) for _ in range(20)]
    await asyncio.sleep(0)
    first.cancel()
    assert await asyncio.gather(*rest) == [True] * 20
    assert app.stats.model_lists == 2
    with pytest.raises(NotFound):
        await provider.require_model("no-such-model")
    assert app.stats.model_lists == 2  # within the TTL: the cached list answers


async def test_a_failed_model_list_fails_every_waiter_and_is_not_kept(
    make_provider: Callable[..., Any],
) -> None:
    provider = make_provider("http://127.0.0.1:9")  # nothing listens there
    for _ in range(2):  # the second round tries again rather than reusing the failure
        results = await asyncio.wait_for(
            asyncio.gather(*(provider.list_models() for _ in range(20)), return_exceptions=True),
            30,
        )
        assert all(isinstance(r, UpstreamError) for r in results), results
        assert provider._fetching is None


async def test_cancel_mid_stream_closes_upstream_connection(
    upstream: tuple[ScriptedUpstream, ThreadServer], make_provider: Callable[..., Any]
) -> None:
    app, server = upstream
    provider = make_provider(server.url)
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


async def test_unknown_model_is_not_found(
    upstream: tuple[ScriptedUpstream, ThreadServer], make_provider: Callable[..., Any]
) -> None:
    _, server = upstream
    with pytest.raises(NotFound):
        async for _ in make_provider(server.url).stream(_request(model="missing")):
            pass


async def test_server_error_is_retried_by_the_sdk(
    upstream: tuple[ScriptedUpstream, ThreadServer], make_provider: Callable[..., Any]
) -> None:
    app, server = upstream
    events = [e async for e in make_provider(server.url, retries=1).stream(_request("flaky-model"))]
    assert app.stats.injected_failures == 1
    assert "".join(e.text for e in events if isinstance(e, TokenDelta)) == app.expected_text(5)


async def test_unreachable_upstream_is_a_retryable_upstream_error(
    make_provider: Callable[..., Any],
) -> None:
    from devstack.local_aws import free_port

    with pytest.raises(UpstreamError) as caught:
        async for _ in make_provider(f"http://127.0.0.1:{free_port()}").stream(_request()):
            pass
    assert caught.value.status_code >= 500


async def test_upstream_dying_mid_stream_is_an_upstream_error(
    make_provider: Callable[..., Any],
) -> None:
    app = ScriptedUpstream(ttft_s=0.01, interval_s=0.01, break_after=3)
    got: list[str] = []

    async def consume(provider: Any) -> None:
        async for event in provider.stream(_request(max_tokens=100)):
            if isinstance(event, TokenDelta):
                got.append(event.text)

    with ThreadServer(app) as server, pytest.raises(UpstreamError, match="broke"):
        await consume(make_provider(server.url))
    assert "".join(got) == app.expected_text(3)
