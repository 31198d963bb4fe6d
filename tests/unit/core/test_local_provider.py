from __future__ import annotations

import asyncio
import time

import pytest

from core.errors import UpstreamError
from core.providers.base import Finish, TokenDelta
from core.providers.local import LocalProvider, count_tokens, script_reply
from core.schemas.chat import ChatCompletionRequest, ChatMessage


def _request(text: str, max_tokens: int | None = None) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="local-model",
        messages=[ChatMessage(role="user", content=text)],
        max_tokens=max_tokens,
    )


def test_reply_is_deterministic_per_prompt() -> None:
    assert script_reply(_request("hello")) == script_reply(_request("hello"))
    assert script_reply(_request("hello")) != script_reply(_request("something else"))


def test_directives_echo_and_token_count() -> None:
    tokens, reason = script_reply(_request("/echo one two three"))
    assert "".join(tokens) == "one two three"
    assert reason == "stop"
    tokens, _ = script_reply(_request("/tokens 7"))
    assert len(tokens) == 7


def test_max_tokens_truncates_with_length_reason() -> None:
    tokens, reason = script_reply(_request("/tokens 30", max_tokens=5))
    assert len(tokens) == 5
    assert reason == "length"


async def test_stream_paces_tokens_and_reports_usage() -> None:
    provider = LocalProvider(["local-model"], ttft_s=0.05, token_delay_s=0.01)
    start = time.perf_counter()
    first_at = None
    texts: list[str] = []
    finish = None
    async for event in provider.stream(_request("/tokens 10")):
        if isinstance(event, TokenDelta):
            first_at = first_at or time.perf_counter() - start
            texts.append(event.text)
        else:
            finish = event
    assert first_at is not None and first_at >= 0.05
    assert len(texts) == 10
    assert isinstance(finish, Finish)
    assert finish.usage.completion_tokens == 10
    assert finish.usage.prompt_tokens == count_tokens("/tokens 10")


async def test_complete_equals_joined_stream() -> None:
    provider = LocalProvider(["local-model"], ttft_s=0, token_delay_s=0)
    request = _request("tell me about streams")
    result = await provider.complete(request)
    streamed = [e.text async for e in provider.stream(request) if isinstance(e, TokenDelta)]
    assert result.text == "".join(streamed)


async def test_cancelling_a_stream_stops_it() -> None:
    provider = LocalProvider(["local-model"], ttft_s=0, token_delay_s=0.01)
    got: list[str] = []

    async def consume() -> None:
        async for event in provider.stream(_request("/tokens 1000")):
            if isinstance(event, TokenDelta):
                got.append(event.text)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 < len(got) < 100


async def test_fail_directive_raises_retryable_error() -> None:
    provider = LocalProvider(["local-model"], ttft_s=0, token_delay_s=0)
    with pytest.raises(UpstreamError) as info:
        async for _ in provider.stream(_request("/fail")):
            pass
    assert info.value.retryable
