"""SPEC 9 through the ``openai`` provider, against an upstream started by the test: the
request goes out as the client sent it, and every field of the reply comes back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from core.providers.assemble import MessageAssembler
from core.providers.base import Finish, RichDelta, TokenDelta
from core.providers.registry import build_provider
from core.schemas.chat import parse_chat_request
from core.settings import Settings
from tests.support.delta_upstream import DeltaUpstream, tool_call_deltas
from tests.support.servers import ThreadServer

ARGS = json.dumps({"city": "Oslo", "days": [1, 2, 3], "note": "é" * 40})
DELTAS: list[dict[str, Any]] = [
    {"reasoning_content": "The user wants"},
    {"reasoning_content": " the weather."},
    {"content": "Checking."},
    *tool_call_deltas("get_weather", ARGS, fragments=7),
    *tool_call_deltas("get_time", "{}", fragments=1, call_id="call_2", index=1),
]
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
]


@pytest.fixture
def upstream() -> Iterator[tuple[DeltaUpstream, ThreadServer]]:
    app = DeltaUpstream(DELTAS, interval_s=0.0, logprobs=True)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(params=["httpx", "aiohttp", "push"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _provider(url: str, transport: str) -> Any:
    settings = Settings(
        llm_provider="openai",
        openai_api_key="sk-test",
        openai_base_url=f"{url}/v1",
        openai_max_retries=0,
        openai_http_client=transport,
    )
    return build_provider(settings)


@pytest.fixture
async def provider(
    transport: str, upstream: tuple[DeltaUpstream, ThreadServer]
) -> AsyncIterator[Any]:
    made = _provider(upstream[1].url, transport)
    yield made
    await made.aclose()


def _chat(**extra: Any) -> Any:
    body = {
        "model": "upstream-model",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}}
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c0", "content": "sunny"},
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
        "seed": 3,
        "x_vendor": {"a": [1]},
        **extra,
    }
    return parse_chat_request(json.dumps(body).encode(), Settings())


async def test_a_streamed_tool_call_arrives_whole_with_every_field(
    provider: Any, upstream: tuple[DeltaUpstream, ThreadServer]
) -> None:
    app, _ = upstream
    chat = _chat(logprobs=True, stream=True, stream_options={"include_usage": False})
    events = [e async for e in provider.stream(chat)]
    sent = app.requests[-1]
    assert {k: v for k, v in sent.items() if k not in ("stream", "stream_options")} == {
        k: v for k, v in chat.raw.items() if k not in ("stream", "stream_options")
    }
    assert sent["stream_options"] == {"include_usage": True}
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert finish.usage.completion_tokens == 77
    rich = [e for e in events if isinstance(e, RichDelta)]
    # every delta with more than text is rich; its fields are the upstream's, nulls aside
    assert [e.fields for e in rich if e.fields] == [
        {k: v for k, v in d.items() if k != "content"} for d in DELTAS if set(d) != {"content"}
    ]
    assert any(e.logprobs for e in rich)  # the content delta carried logprobs
    assembler = MessageAssembler()
    for event in events[:-1]:
        if isinstance(event, TokenDelta):
            assembler.add_text(event.text)
        else:
            assembler.add(event.text, event.fields, event.logprobs)
    message = assembler.message()
    assert message["content"] == "Checking."
    assert message["reasoning_content"] == "The user wants the weather."
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == [ARGS, "{}"]
    assert [c["id"] for c in message["tool_calls"]] == ["call_1", "call_2"]


async def test_text_tokens_stay_token_deltas(provider: Any) -> None:
    chat = _chat()
    chat.raw.pop("tools")
    chat.raw.pop("tool_choice")
    events = [e async for e in provider.stream(chat)]
    assert [type(e) for e in events] == [TokenDelta, Finish]
    assert events[-1].reason == "stop"


async def test_a_non_streaming_completion_is_the_upstream_message_with_all_its_fields(
    provider: Any, upstream: tuple[DeltaUpstream, ThreadServer]
) -> None:
    app, _ = upstream
    completion = await provider.complete(_chat())
    assert app.requests[-1]["tools"] == TOOLS
    assert app.requests[-1]["x_vendor"] == {"a": [1]}
    assert completion.finish_reason == "tool_calls"
    assert completion.message["x_vendor"] == {"kept": True}
    assert completion.message["tool_calls"][0]["function"]["arguments"] == ARGS
    body = completion.body("upstream-model")
    assert body["choices"][0]["message"] == completion.message
    assert body["usage"]["total_tokens"] == 88


MIXED: list[dict[str, Any]] = [
    {"content": "Let"},
    {"content": " me"},
    {"content": " check."},
    *tool_call_deltas("get_weather", ARGS, fragments=4),
    {"content": " Then"},
    {"content": " more."},
]


async def test_text_given_to_on_text_keeps_its_place_among_the_other_deltas(
    transport: str,
) -> None:
    """The stream service's path: text to a callback (pushed from the socket by the push
    transport), the rest yielded; together they are the upstream's deltas in its order."""
    app = DeltaUpstream(MIXED, interval_s=0.0)
    with ThreadServer(app) as server:
        provider = _provider(server.url, transport)
        seen: list[tuple[str, Any]] = []
        pushed: list[str] = []

        def on_text(text: str) -> None:
            seen.append(("text", text))
            pushed.append(text)

        async for event in provider.stream(_chat(), on_text=on_text):
            if isinstance(event, TokenDelta):
                seen.append(("text", event.text))
            elif isinstance(event, RichDelta):
                seen.append(("rich", event.fields))
            else:
                assert isinstance(event, Finish) and event.reason == "tool_calls"
        await provider.aclose()
    assert seen == [("text", d["content"]) if "content" in d else ("rich", d) for d in MIXED]
    # only the push transport pushes; the others yield all their text
    assert (pushed[:3] == ["Let", " me", " check."]) == (transport == "push")
