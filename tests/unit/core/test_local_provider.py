from __future__ import annotations

import asyncio
import re
import time

import pytest

from core.errors import UpstreamError
from core.providers.base import Finish, TokenDelta
from core.providers.local import (
    LocalProvider,
    count_tokens,
    count_tokens_yielding,
    iter_tokens,
    script_reply,
)
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


_OLD_TOKEN_RE = re.compile(r"\s*\S+")  # the tokenizer this one replaced (quadratic)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "one", " one  two\tthree\n", "a" * 50 + " " * 50 + "b", "\n\nx y  ", "é ü 漢字  z"],
)
def test_linear_tokenizer_matches_the_old_one(text: str) -> None:
    assert list(iter_tokens(text)) == _OLD_TOKEN_RE.findall(text)
    assert count_tokens(text) == len(_OLD_TOKEN_RE.findall(text))


async def test_counting_in_slices_counts_words_cut_by_a_slice_once() -> None:
    text = ("word " * 20_000) + ("x" * 70_000) + ("  spaced  out " * 5_000)
    assert await count_tokens_yielding(text) == count_tokens(text)
    assert await count_tokens_yielding("ab" * 40_000) == 1


def test_tokens_directive_is_bounded_before_anything_is_built() -> None:
    tokens, reason = script_reply(_request("/tokens " + "9" * 5000), max_reply_tokens=100)
    assert (len(tokens), reason) == (100, "length")
    tokens, reason = script_reply(_request("/tokens 99999999999", max_tokens=7))
    assert (len(tokens), reason) == (7, "length")
    tokens, reason = script_reply(_request("/tokens 0003"))
    assert (len(tokens), reason) == (3, "stop")


def test_echo_is_bounded_by_the_output_limit() -> None:
    tokens, reason = script_reply(_request("/echo " + "a " * 10_000), max_reply_tokens=50)
    assert (len(tokens), reason) == (50, "length")


def test_whitespace_only_prompts_get_the_default_reply() -> None:
    tokens, reason = script_reply(_request(" " * 200_000))
    assert len(tokens) == 48 and reason == "stop"
