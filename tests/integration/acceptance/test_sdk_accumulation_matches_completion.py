"""The openai SDK's own accumulation of a streamed tool-call reply is the non-streaming
completion's message (SPEC 9): ``tool_calls`` equal and ``content`` None in both, as
OpenAI's streams give it (the opening chunk carries no empty ``content`` the SDK would
keep as ``""``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.support.servers import ProcessServer

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def client(aws_env: dict[str, str]) -> Iterator[openai.OpenAI]:
    env = {
        **aws_env,
        "STREAMS_TABLE": f"streams-{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "local",
        "LOCAL_TTFT_MS": "5",
        "LOCAL_TOKEN_DELAY_MS": "1",
    }
    token = DevTokens(DEV_SECRET_DEFAULT, 3600).mint("acceptance-accumulate")
    with ProcessServer("stream_service", env, health="/stream/healthz") as node:
        yield openai.OpenAI(base_url=f"{node.url}/stream/v1", api_key=token, max_retries=0)


@pytest.mark.parametrize(
    "ask",
    [
        {"messages": [{"role": "user", "content": '/tool get_weather {"city": "Oslo"}'}]},
        {"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"},
    ],
)
def test_the_sdk_stream_helper_rebuilds_the_completions_message(
    client: openai.OpenAI, ask: dict[str, Any]
) -> None:
    whole = client.chat.completions.create(model="local-model", tools=TOOLS, **ask)
    with client.chat.completions.stream(model="local-model", tools=TOOLS, **ask) as stream:
        streamed = stream.get_final_completion()
    expected, got = whole.choices[0], streamed.choices[0]
    assert got.finish_reason == expected.finish_reason == "tool_calls"
    assert expected.message.content is None
    assert got.message.content is None
    assert got.message.tool_calls is not None and expected.message.tool_calls is not None
    assert [
        (c.id, c.type, c.function.name, c.function.arguments) for c in got.message.tool_calls
    ] == [
        (c.id, c.type, c.function.name, c.function.arguments) for c in expected.message.tool_calls
    ]


def test_a_text_reply_still_accumulates_its_whole_text(client: openai.OpenAI) -> None:
    ask: Any = [{"role": "user", "content": "/echo alpha beta gamma"}]
    with client.chat.completions.stream(model="local-model", messages=ask) as stream:
        streamed = stream.get_final_completion()
    assert streamed.choices[0].message.content == "alpha beta gamma"
