"""Structured output and tool errors of the local model, and every field of a request
reaching the OpenAI-like upstream as sent, through the official SDKs (SPEC 9)."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pydantic
import pytest

from tests.integration.agent.conftest import Target
from tests.support.node import run_node


class Forecast(pydantic.BaseModel):
    day: str
    high_c: int
    conditions: Literal["sunny", "cloudy", "rain"]


class Report(pydantic.BaseModel):
    city: str
    forecasts: list[Forecast]
    warning: str | None
    confidence: float


# Report as a strict JSON Schema, written out as a Node user would
STRICT_REPORT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "forecasts": {"type": "array", "items": {"$ref": "#/$defs/Forecast"}},
        "warning": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "confidence": {"type": "number"},
    },
    "required": ["city", "forecasts", "warning", "confidence"],
    "additionalProperties": False,
    "$defs": {
        "Forecast": {
            "type": "object",
            "properties": {
                "day": {"type": "string", "format": "date"},
                "high_c": {"type": "integer", "minimum": -60, "maximum": 60},
                "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rain"]},
            },
            "required": ["day", "high_c", "conditions"],
            "additionalProperties": False,
        }
    },
}


def _client(target: Target, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=target.base_url, api_key=token, max_retries=0)


@pytest.mark.parametrize("where", ["rest-local", "stream-local"])
def test_sdk_parse_gets_a_valid_document_from_the_local_model(
    targets: dict[str, Target], token: str, where: str
) -> None:
    client = _client(targets[where], token)
    completion = client.chat.completions.parse(
        model="local-model",
        messages=[{"role": "user", "content": "The forecast for Lyon, please."}],
        response_format=Report,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Report) and parsed.forecasts
    assert completion.choices[0].finish_reason == "stop"


def test_sdk_stream_helper_parses_the_local_model_streamed_document(
    targets: dict[str, Target], token: str
) -> None:
    client = _client(targets["stream-local"], token)
    with client.chat.completions.stream(
        model="local-model",
        messages=[{"role": "user", "content": "The forecast for Lyon, please."}],
        response_format=Report,
    ) as stream:
        pieces = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(pieces) > 10  # streamed in pieces, not one blob
    assert isinstance(final.choices[0].message.parsed, Report)


@pytest.mark.parametrize(
    ("where", "stream"), [("rest-local", False), ("stream-local", False), ("stream-local", True)]
)
def test_node_sdk_json_schema_and_json_object_from_the_local_model(
    targets: dict[str, Target], token: str, where: str, stream: bool
) -> None:
    target = targets[where]
    formats: list[dict[str, Any]] = [
        {
            "type": "json_schema",
            "json_schema": {"name": "report", "schema": STRICT_REPORT, "strict": True},
        },
        {"type": "json_object"},
    ]
    for response_format in formats:
        config = {
            "baseURL": target.base_url,
            "apiKey": token,
            "model": "local-model",
            "stream": stream,
            "messages": [{"role": "user", "content": "Reply in JSON."}],
            "extra": {"response_format": response_format},
            "results": {},
        }
        [turn] = run_node("agent_loop.mjs", json.dumps(config))["turns"]
        document = json.loads(turn["message"]["content"])
        if response_format["type"] == "json_schema":
            jsonschema.validate(document, STRICT_REPORT)
            Report.model_validate(document)
        else:
            assert isinstance(document, dict)


@pytest.mark.parametrize("where", ["rest-local", "stream-local"])
def test_local_model_refuses_bad_tool_requests_with_a_400_naming_the_param(
    targets: dict[str, Target], token: str, where: str
) -> None:
    client = _client(targets[where], token)
    tools: Any = [
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="local-model",
            messages=[{"role": "user", "content": '/tool launch {"at": "noon"}'}],
            tools=tools,
        )
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "tools"
    assert "launch" in info.value.message
    strict_loose: Any = {
        "type": "json_schema",
        "json_schema": {
            "name": "x",
            "strict": True,
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    }
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="local-model",
            messages=[{"role": "user", "content": "hi"}],
            response_format=strict_loose,
        )
    assert isinstance(info.value.body, dict)
    assert info.value.body["param"] == "response_format.json_schema.schema"


FULL_BODY: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief.", "name": "policy"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What do you see and hear?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://example.com/cat.png", "detail": "high"},
                },
                {
                    "type": "input_audio",
                    "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"},
                },
                {
                    "type": "file",
                    "file": {
                        "filename": "notes.pdf",
                        "file_data": "data:application/pdf;base64,JVBERi0=",
                    },
                },
            ],
        },
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look it up.",
                "strict": False,
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"seen": {"type": "string"}},
                "required": ["seen"],
                "additionalProperties": False,
            },
        },
    },
    "seed": 1234,
    "metadata": {"trace": "t-1", "tenant": "acme"},
    "reasoning_effort": "low",
    "logprobs": True,
    "top_logprobs": 3,
    "stop": ["\n\n"],
    "x_vendor": {"deep": {"list": [1, 2.5, "three", None, True]}},
}


@pytest.mark.parametrize(
    ("where", "stream"),
    [("rest-upstream", False), ("stream-upstream", False), ("stream-upstream", True)],
)
def test_every_field_reaches_the_upstream_as_sent_and_the_reply_honours_it(
    targets: dict[str, Target], token: str, where: str, stream: bool
) -> None:
    target = targets[where]
    assert target.upstream is not None
    body = {"model": target.model, **FULL_BODY, **({"stream": True} if stream else {})}
    raw = json.dumps(body).encode()
    before = len(target.upstream.received)
    response = httpx.post(
        f"{target.base_url}/chat/completions",
        content=raw,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    [received] = list(target.upstream.received)[before:]
    owned = ("stream", "stream_options")
    assert {k: v for k, v in received.items() if k not in owned} == {
        k: v for k, v in body.items() if k not in owned
    }
    if stream:
        chunks = [
            json.loads(line[5:])
            for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"
        ]
        choices = [c["choices"][0] for c in chunks if c.get("choices")]
        text = "".join(c["delta"].get("content") or "" for c in choices)
        with_logprobs = [c for c in choices if c["delta"].get("content")]
        assert with_logprobs and all(
            len(c["logprobs"]["content"][0]["top_logprobs"]) == 3 for c in with_logprobs
        )
    else:
        choice = response.json()["choices"][0]
        text = choice["message"]["content"]
        assert len(choice["logprobs"]["content"][0]["top_logprobs"]) == 3
    assert set(json.loads(text)) == {"seen"}


@pytest.mark.parametrize("where", ["rest-upstream", "stream-upstream"])
def test_the_upstreams_400_reaches_the_client_in_openai_shape(
    targets: dict[str, Target], token: str, where: str
) -> None:
    client = _client(targets[where], token)
    messages: Any = [
        {"role": "user", "content": "hi"},
        {"role": "assistant"},
        {"role": "user", "content": "again"},
    ]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="upstream-model", messages=messages)
    assert "expected a string, got null" in info.value.message
