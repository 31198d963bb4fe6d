"""SPEC 9: a chat request reaches the upstream as the client sent it; what the service
refuses is a 400 naming the ``param``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import InvalidRequest
from core.schemas.chat import ChatCompletionRequest, ChatMessage, parse_chat_request
from core.settings import Settings

SETTINGS = Settings(max_tools=3, max_tool_schema_bytes=400, max_content_parts=4)

AGENT_TURN: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "be brief", "name": "policy"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                },
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1", "x_vendor": 1}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                }
            ],
            "refusal": None,
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"answer": 42}'},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "look up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    "parallel_tool_calls": False,
    "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}},
    "logprobs": True,
    "top_logprobs": 2,
    "seed": 7,
    "stop": ["\n\n"],
    "metadata": {"k": "v"},
    "reasoning_effort": "low",
    "modalities": ["text"],
    "prediction": {"type": "content", "content": "x"},
    "x_vendor_extension": {"deep": [1, {"a": None}]},
    "stream": True,
    "stream_options": {"include_usage": True},
}


def test_every_field_the_service_does_not_own_is_forwarded_unchanged() -> None:
    request = parse_chat_request(json.dumps(AGENT_TURN).encode(), SETTINGS)
    forwarded = request.to_openai_kwargs()
    expected = {k: v for k, v in AGENT_TURN.items() if k not in ("stream", "stream_options")}
    assert forwarded == expected
    # the typed view the service reads
    assert request.tools is not None and request.tools[0]["function"]["name"] == "lookup"
    assert request.messages[2].tool_calls is not None
    assert request.messages[3].tool_call_id == "call_1"
    assert request.messages[1].text() == "what is this?"
    assert request.stream is True and request.stream_options is not None


def test_a_request_built_in_code_forwards_its_set_fields() -> None:
    request = ChatCompletionRequest(
        model="m",
        messages=[ChatMessage(role="user", content="hi")],
        tools=[{"type": "function", "function": {"name": "f"}}],
        stream=True,
    )
    assert request.to_openai_kwargs() == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }


def _refused(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(json.dumps(body).encode(), SETTINGS)
    assert info.value.status_code == 400
    assert info.value.body()["error"]["type"] == "invalid_request_error"
    return info.value


def _tool(name: str, pad: int = 0) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": "d" * pad}}


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"tools": [_tool(f"f{i}") for i in range(4)]}, "tools", "too_many_tools"),
        ({"tools": [_tool("a"), _tool("b", pad=500)]}, "tools[1]", "tool_schema_too_large"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name", None),
        ({"tools": [{"function": {"name": "f"}}]}, "tools[0].type", None),
        ({"tools": "f"}, "tools", None),
        ({"tool_choice": "required"}, "tool_choice", None),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 5}]},
            "messages[0].content",
            "too_many_content_parts",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "a"}]}]},
            "messages[0].content[0].type",
            None,
        ),
        (
            {"messages": [{"role": "tool", "content": "x", "tool_call_id": 5}]},
            "messages[0].tool_call_id",
            None,
        ),
        ({"logprobs": "yes"}, "logprobs", None),
        ({"messages": None}, "messages", None),
    ],
)
def test_what_the_service_refuses_is_a_400_naming_the_param(
    fields: dict[str, Any], param: str, code: str | None
) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    error = _refused(body)
    assert error.param == param
    if code is not None:
        assert error.code == code


def test_a_missing_field_is_named() -> None:
    assert _refused({"messages": [{"role": "user", "content": "x"}]}).param == "model"


@pytest.mark.parametrize("field", ["messages", "tools", "x_vendor", "metadata"])
def test_deeply_nested_json_is_a_400_invalid_json_not_a_crash(field: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    hi = '[{"role": "user", "content": "hi"}]'
    if field == "messages":
        body = f'{{"model": "m", "messages": {deep}}}'
    else:
        body = f'{{"model": "m", "messages": {hi}, "{field}": {deep}}}'
    error = _refused_raw(body.encode())
    assert error.code == "invalid_json"


def _refused_raw(body: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_chat_request(body, SETTINGS)
    assert info.value.status_code == 400
    return info.value
