"""The scripted upstream behaves as OpenAI does where a proxy could lose something: checked
with the official ``openai`` SDK straight against it (the tests of the service trust it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from devstack.upstream import ScriptedUpstream
from tests.support.servers import ThreadServer

MODEL = "upstream-model"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
ASK = '/tool get_weather {"city": "Paris", "days": 2}'


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.01, interval_s=0.002, default_tokens=6)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def client(upstream: tuple[ScriptedUpstream, ThreadServer]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{upstream[1].url}/v1", api_key="sk-test", max_retries=0)


def _chunks(client: openai.OpenAI, **body: Any) -> list[Any]:
    return list(client.chat.completions.create(model=MODEL, stream=True, **body))


def test_tool_calls_only_when_tools_were_sent(client: openai.OpenAI) -> None:
    without = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ASK}]
    )
    assert without.choices[0].finish_reason == "stop"
    assert without.choices[0].message.tool_calls is None
    assert without.choices[0].message.content == " w0 w1 w2 w3 w4 w5"
    done = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ASK}], tools=[WEATHER]
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    assert arguments == {"city": "Paris", "days": 2}


def test_tool_call_fragments_stream_as_openai_streams_them(client: openai.OpenAI) -> None:
    chunks = _chunks(client, messages=[{"role": "user", "content": ASK}], tools=[WEATHER])
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    first, *rest = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert first.index == 0 and first.id and first.id.startswith("call_")
    assert first.type == "function" and first.function is not None
    assert first.function.name == "get_weather" and first.function.arguments == ""
    assert len(rest) > 3
    for fragment in rest:
        assert fragment.id is None and fragment.type is None
        assert fragment.function is not None and fragment.function.name is None
    joined = "".join(f.function.arguments or "" for f in rest if f.function)
    assert json.loads(joined) == {"city": "Paris", "days": 2}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"


def test_forced_tool_choice_gets_arguments_valid_for_the_schema(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "weather?"}],
        tools=[WEATHER],
        tool_choice="required",
    )
    [call] = done.choices[0].message.tool_calls or []
    arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[index]


def test_agent_loop_final_answer_quotes_the_tool_result(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": ASK}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    message = first.choices[0].message
    messages.append(message.model_dump(exclude_none=True))
    [call] = message.tool_calls or []
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 C, clear"})
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert final.choices[0].finish_reason == "stop"
    assert "18 C, clear" in (final.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("messages", "param", "words"),
    [
        (
            [{"role": "user", "content": "hi"}, {"role": "assistant"}],
            "messages.[1].content",
            "expected a string, got null",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "content": "18 C"},
            ],
            "messages[2].tool_call_id",
            "Missing required parameter",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_9", "content": "x"},
            ],
            "messages.[1].role",
            "must be a response to a preceeding message with 'tool_calls'",
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_7",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "user", "content": "and?"},
            ],
            "messages.[1].role",
            "call_7",
        ),
    ],
)
def test_conversations_openai_refuses_are_a_400_in_its_shape(
    upstream: tuple[ScriptedUpstream, ThreadServer],
    client: openai.OpenAI,
    messages: list[Any],
    param: str,
    words: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == param
    assert error["type"] == "invalid_request_error" and words in error["message"]
    raw = httpx.post(
        f"{upstream[1].url}/v1/chat/completions",
        json={"model": MODEL, "messages": messages, "stream": True},
    )
    assert raw.status_code == 400 and set(raw.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }


def test_response_format_is_honoured(client: openai.OpenAI) -> None:
    obj = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "json please"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "tags"],
        "additionalProperties": False,
    }
    fmt: Any = {
        "type": "json_schema",
        "json_schema": {"name": "p", "schema": schema, "strict": True},
    }
    chunks = _chunks(client, messages=[{"role": "user", "content": "x"}], response_format=fmt)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), schema)


def test_logprobs_come_with_every_chunk_when_asked(client: openai.OpenAI) -> None:
    chunks = _chunks(
        client, messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=2
    )
    content = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 6
    for choice in content:
        assert choice.logprobs is not None and choice.logprobs.content is not None
        [entry] = choice.logprobs.content
        assert entry.token == choice.delta.content and len(entry.top_logprobs) == 2
    plain = _chunks(client, messages=[{"role": "user", "content": "hi"}])
    assert all(c.choices[0].logprobs is None for c in plain if c.choices)
    whole = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], logprobs=True
    )
    assert whole.choices[0].logprobs is not None
    tokens = [e.token for e in whole.choices[0].logprobs.content or []]
    assert "".join(tokens) == whole.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], top_logprobs=2
        )
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "top_logprobs"


def test_refusal_and_reasoning_when_asked(client: openai.OpenAI) -> None:
    refused = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "/refuse I can't help with that."}]
    )
    message = refused.choices[0].message
    assert message.refusal == "I can't help with that." and message.content is None
    chunks = _chunks(client, messages=[{"role": "user", "content": "/reason Let me think."}])
    deltas = [c.choices[0].delta.model_dump() for c in chunks if c.choices]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert reasoning == "Let me think."
    assert "".join(d.get("content") or "" for d in deltas) == " w0 w1 w2 w3 w4 w5"


def test_every_request_is_recorded_as_received(
    upstream: tuple[ScriptedUpstream, ThreadServer],
) -> None:
    app, server = upstream
    body = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBO", "detail": "high"},
                    },
                ],
            },
        ],
        "seed": 7,
        "metadata": {"k": "v"},
        "x_vendor": {"nested": [1, 2]},
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    done = httpx.post(f"{server.url}/v1/chat/completions", content=raw)
    assert done.status_code == 200
    assert app.received_bodies[-1] == raw
    assert app.received[-1] == body
