"""The local model speaks tools and structured output (SPEC 9), deterministically."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import InvalidRequest
from core.providers.assemble import MessageAssembler
from core.providers.base import Completion, Finish, RichDelta, TokenDelta
from core.providers.local import LocalProvider, script
from core.providers.local_tools import json_pieces
from core.schemas.chat import ChatCompletionRequest, parse_chat_request
from core.settings import Settings

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "format": "uuid"}},
            "required": ["zone"],
        },
    },
}


def _request(messages: list[dict[str, Any]] | str, **fields: Any) -> ChatCompletionRequest:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    body = {"model": "local-model", "messages": messages, **fields}
    return parse_chat_request(json.dumps(body).encode(), Settings())


async def _complete(request: ChatCompletionRequest) -> Completion:
    return await LocalProvider(["local-model"], ttft_s=0, token_delay_s=0).complete(request)


async def _events(request: ChatCompletionRequest) -> list[Any]:
    provider = LocalProvider(["local-model"], ttft_s=0, token_delay_s=0)
    return [event async for event in provider.stream(request)]


async def test_tool_directive_streams_a_call_in_openai_fragments() -> None:
    request = _request(
        '/tool get_weather {"city": "Paris", "unit": "celsius", "days": 2}',
        tools=[CLOCK, WEATHER],
    )
    events = await _events(request)
    *deltas, finish = events
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert all(isinstance(d, RichDelta) and d.text == "" for d in deltas)
    first, *rest = (d.fields["tool_calls"] for d in deltas)
    assert first == [
        {
            "index": 0,
            "id": first[0]["id"],
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        }
    ]
    assert first[0]["id"].startswith("call_")
    assert len(rest) >= 5  # "several" fragments, each only index + arguments
    assert all(
        set(f[0]) == {"index", "function"} and set(f[0]["function"]) == {"arguments"} for f in rest
    )
    arguments = "".join(f[0]["function"]["arguments"] for f in rest)
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius", "days": 2}
    assert finish.usage.completion_tokens == len(deltas)


async def test_tool_call_completion_is_the_assembled_message() -> None:
    request = _request('/tool get_time {"zone": "UTC"}', tools=[CLOCK, WEATHER])
    completion = await _complete(request)
    assert completion.finish_reason == "tool_calls"
    assert completion.message["content"] is None
    [call] = completion.message["tool_calls"]
    assert call["function"] == {"name": "get_time", "arguments": '{"zone": "UTC"}'}
    assert call["type"] == "function" and call["id"].startswith("call_")
    # deterministic: the same request, the same call id
    again = await _complete(request)
    assert again.message == completion.message


async def test_several_tool_lines_are_parallel_calls_unless_disabled() -> None:
    prompt = '/tool get_time {"zone": "UTC"}\n/tool get_weather {"city": "Oslo"}'
    completion = await _complete(_request(prompt, tools=[CLOCK, WEATHER]))
    calls = completion.message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_time", "get_weather"]
    assert len({c["id"] for c in calls}) == 2
    single = await _complete(_request(prompt, tools=[CLOCK, WEATHER], parallel_tool_calls=False))
    assert [c["function"]["name"] for c in single.message["tool_calls"]] == ["get_time"]


def test_tool_directive_for_an_unknown_function_is_a_400_naming_tools() -> None:
    with pytest.raises(InvalidRequest) as info:
        script(_request('/tool launch {"target": "moon"}', tools=[CLOCK]))
    assert info.value.param == "tools"
    assert "launch" in info.value.message and "get_time" in info.value.message


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", ""])
def test_tool_directive_with_bad_arguments_is_a_400(arguments: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        script(_request(f"/tool get_time {arguments}", tools=[CLOCK]))
    assert info.value.param == "messages[0].content"


async def test_tool_directive_without_tools_is_plain_text() -> None:
    completion = await _complete(_request('/tool get_time {"zone": "UTC"}'))
    assert completion.finish_reason == "stop"
    assert "tool_calls" not in completion.message and completion.text


async def test_tool_choice_required_calls_the_first_function_with_valid_arguments() -> None:
    completion = await _complete(
        _request("What is the weather like?", tools=[WEATHER, CLOCK], tool_choice="required")
    )
    [call] = completion.message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[arg-type]


async def test_tool_choice_naming_a_function_calls_it() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    completion = await _complete(_request("hi", tools=[WEATHER, CLOCK], tool_choice=choice))
    [call] = completion.message["tool_calls"]
    assert call["function"]["name"] == "get_time"
    zone = json.loads(call["function"]["arguments"])["zone"]
    jsonschema.validate({"zone": zone}, CLOCK["function"]["parameters"])  # type: ignore[arg-type]


def test_tool_choice_naming_an_unknown_function_is_a_400() -> None:
    choice = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(InvalidRequest) as info:
        script(_request("hi", tools=[WEATHER], tool_choice=choice))
    assert info.value.param == "tool_choice"


async def test_tools_with_auto_choice_and_a_plain_prompt_answer_text() -> None:
    completion = await _complete(_request("/echo just text", tools=[WEATHER]))
    assert completion.text == "just text" and completion.finish_reason == "stop"
    none = await _complete(
        _request('/tool get_weather {"city": "x"}', tools=[WEATHER], tool_choice="none")
    )
    assert "tool_calls" not in none.message


async def test_agent_loop_answer_quotes_the_tool_result() -> None:
    first = await _complete(_request('/tool get_weather {"city": "Paris"}', tools=[WEATHER]))
    call = first.message["tool_calls"][0]
    result = '{"temperature": 18, "sky": "clear"}'
    messages = [
        {"role": "user", "content": '/tool get_weather {"city": "Paris"}'},
        first.message,
        {"role": "tool", "tool_call_id": call["id"], "content": result},
    ]
    final = await _complete(_request(messages, tools=[WEATHER]))
    assert final.finish_reason == "stop"
    assert result in final.text and "get_weather" in final.text
    streamed = await _events(_request(messages, tools=[WEATHER]))
    assert all(isinstance(e, TokenDelta) for e in streamed[:-1])
    assert "".join(e.text for e in streamed[:-1]) == final.text


def test_a_tool_message_answering_no_call_is_a_400_naming_it() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok"},
        {"role": "tool", "tool_call_id": "call_unknown", "content": "42"},
    ]
    with pytest.raises(InvalidRequest) as info:
        script(_request(messages, tools=[WEATHER]))
    assert info.value.param == "messages[2].tool_call_id"


async def test_json_object_format_answers_a_json_object() -> None:
    completion = await _complete(_request("tell me", response_format={"type": "json_object"}))
    assert isinstance(json.loads(completion.text), dict)


REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 12, "maxLength": 40},
        "score": {"type": "number", "exclusiveMinimum": 3.5, "maximum": 9},
        "count": {"type": "integer", "minimum": 10, "multipleOf": 4},
        "ok": {"type": "boolean"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["a", "b"]},
            "minItems": 2,
            "maxItems": 3,
        },
        "when": {"type": "string", "format": "date-time"},
        "owner": {"$ref": "#/$defs/person"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
        "level": {"type": ["integer", "null"], "enum": [3, None]},
    },
    "required": ["title", "score", "count", "ok", "tags", "when", "owner", "note", "level"],
    "additionalProperties": False,
    "$defs": {
        "person": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"type": "string", "format": "email"},
            },
            "required": ["name", "email"],
            "additionalProperties": False,
        }
    },
}


@pytest.mark.parametrize("strict", [True, False])
async def test_json_schema_format_answers_a_valid_document(strict: bool) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "report", "schema": REPORT_SCHEMA, "strict": strict},
    }
    completion = await _complete(_request("make a report", response_format=response_format))
    document = json.loads(completion.text)
    jsonschema.Draft202012Validator(
        REPORT_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(document)
    assert set(document) == set(REPORT_SCHEMA["properties"])
    streamed = await _events(_request("make a report", response_format=response_format))
    assert len(streamed) > 10  # streamed in pieces, paced like tokens


def test_strict_json_schema_refuses_what_openai_refuses() -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    partial = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    for schema, words in ((loose, "additionalProperties"), (partial, "'b'")):
        fmt = {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": schema, "strict": True},
        }
        with pytest.raises(InvalidRequest) as info:
            script(_request("hi", response_format=fmt))
        assert info.value.param == "response_format.json_schema.schema"
        assert words in info.value.message
        fmt["json_schema"]["strict"] = False  # type: ignore[index]
        assert json.loads(
            "".join(d.text for d in script(_request("hi", response_format=fmt)).deltas)
        )


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"type": "string", "pattern": "^[0-9]{3}$"}, "pattern"),
        ({"type": "nonsense"}, "Invalid schema"),
        (
            {
                "type": "array",
                "items": {"type": "array", "items": {"type": "string"}, "minItems": 200},
                "minItems": 200,
            },
            "10000 values",
        ),
        ({"$ref": "#/$defs/loop", "$defs": {"loop": {"$ref": "#/$defs/loop"}}}, "deeper"),
    ],
)
def test_a_schema_the_model_cannot_satisfy_is_a_clear_400(schema: Any, words: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    with pytest.raises(InvalidRequest) as info:
        script(_request("hi", response_format=fmt))
    assert info.value.param == "response_format.json_schema.schema"
    assert words in info.value.message


def test_unknown_response_format_type_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        script(_request("hi", response_format={"type": "yaml"}))
    assert info.value.param == "response_format.type"


async def test_image_and_audio_parts_are_acknowledged() -> None:
    content = [
        {"type": "text", "text": "/echo what is in it?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        },
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    completion = await _complete(_request([{"role": "user", "content": content}]))
    assert completion.text == "[image] [audio] what is in it?"
    only_image = [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    completion = await _complete(_request([{"role": "user", "content": only_image}]))
    assert completion.text.startswith("[image] ")


async def test_max_tokens_cuts_a_tool_call_with_length() -> None:
    request = _request('/tool get_time {"zone": "Europe/Paris"}', tools=[CLOCK], max_tokens=3)
    events = await _events(request)
    assert len(events) == 4 and isinstance(events[-1], Finish)
    assert events[-1].reason == "length"


@given(st.text())
def test_json_pieces_join_back_to_the_text(text: str) -> None:
    assert "".join(json_pieces(text)) == text


def test_assembled_fragments_equal_the_call() -> None:
    request = _request('/tool get_weather {"city": "S\\u00e3o Paulo", "days": 3}', tools=[WEATHER])
    assembler = MessageAssembler()
    for delta in script(request).deltas:
        assert isinstance(delta, RichDelta)
        assembler.add(delta.text, delta.fields)
    [call] = assembler.message()["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"city": "São Paulo", "days": 3}


async def test_allowed_tools_required_calls_the_first_allowed_function() -> None:
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    completion = await _complete(_request("hi", tools=[WEATHER, CLOCK], tool_choice=choice))
    assert [c["function"]["name"] for c in completion.message["tool_calls"]] == ["get_time"]
    choice["allowed_tools"]["mode"] = "auto"  # type: ignore[index]
    completion = await _complete(_request("hi", tools=[WEATHER, CLOCK], tool_choice=choice))
    assert "tool_calls" not in completion.message


async def test_custom_tools_are_never_called_and_never_break_a_request() -> None:
    custom = {"type": "custom", "custom": {"name": "grammar_tool"}}
    completion = await _complete(_request("/echo plain", tools=[custom, WEATHER]))
    assert completion.text == "plain"
    completion = await _complete(
        _request('/tool get_weather {"city": "Rome"}', tools=[custom, WEATHER])
    )
    assert completion.message["tool_calls"][0]["function"]["name"] == "get_weather"
