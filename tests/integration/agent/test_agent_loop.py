"""A full agent loop (call, tool result, final answer) through the official ``openai`` SDKs
for Python and Node, streamed and not, on ``/api/v1`` and ``/stream/v1``, in front of the
OpenAI-like upstream and of the local model (SPEC 9). What reached the upstream must be
what the client sent, field for field."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.integration.agent.conftest import Target
from tests.support.node import run_node

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Today's weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
ARGUMENTS = {"city": "Paris", "days": 2}
RESULT = "18 C and clear, wind 9 km/h"
FIRST_MESSAGE = {
    "role": "user",
    "content": [
        {"type": "text", "text": "/tool get_weather " + json.dumps(ARGUMENTS)},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        },
    ],
}
# Fields the service does not own: they must reach the upstream unchanged.
EXTRA = {
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "seed": 42,
    "metadata": {"run": "agent-loop"},
    "x_vendor_option": {"keep": [1, "two", None]},
}
# (target, streamed): the REST API answers stream=false only
CASES = [
    ("rest-upstream", False),
    ("rest-local", False),
    ("stream-upstream", False),
    ("stream-upstream", True),
    ("stream-local", False),
    ("stream-local", True),
]


def _python_loop(target: Target, token: str, stream: bool) -> dict[str, Any]:
    """The agent loop as a Python user writes it with the SDK (its stream helper when
    streaming), recording each request body the SDK sent."""
    sent: list[dict[str, Any]] = []

    def record(request: Any) -> None:
        sent.append(json.loads(request.content))

    client = openai.OpenAI(
        base_url=target.base_url,
        api_key=token,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(event_hooks={"request": [record]}),
    )
    options: dict[str, Any] = {k: v for k, v in EXTRA.items() if k != "x_vendor_option"}
    options["extra_body"] = {"x_vendor_option": EXTRA["x_vendor_option"]}
    messages: list[Any] = [FIRST_MESSAGE]
    turns: list[dict[str, Any]] = []
    for _ in range(4):
        fragments: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "model": target.model,
            "messages": messages,
            "tools": [WEATHER],
            **options,
        }
        if stream:
            with client.chat.completions.stream(**request) as events:
                for event in events:
                    if event.type == "chunk":
                        for choice in event.chunk.choices:
                            for call in choice.delta.tool_calls or []:
                                fragments.append(call.model_dump(exclude_none=True))
                completion: Any = events.get_final_completion()
        else:
            completion = client.chat.completions.create(**request)
        choice = completion.choices[0]
        message = choice.message.model_dump(exclude_none=True, exclude={"parsed"})
        turns.append(
            {"message": message, "finish_reason": choice.finish_reason, "fragments": fragments}
        )
        calls = message.get("tool_calls") or []
        if choice.finish_reason != "tool_calls" or not calls:
            break
        for call in calls:
            call.get("function", {}).pop("parsed_arguments", None)
        messages.append(
            {"role": "assistant", "content": message.get("content"), "tool_calls": calls}
        )
        for call in calls:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": RESULT})
    return {"turns": turns, "sent": sent}


def _node_loop(target: Target, token: str, stream: bool) -> dict[str, Any]:
    config = {
        "baseURL": target.base_url,
        "apiKey": token,
        "model": target.model,
        "stream": stream,
        "messages": [FIRST_MESSAGE],
        "tools": [WEATHER],
        "extra": EXTRA,
        "results": {"get_weather": RESULT},
    }
    result: dict[str, Any] = run_node("agent_loop.mjs", json.dumps(config))
    return result


def _owned_removed(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("stream", "stream_options")}


def _assert_fragments_as_openai_streams_them(fragments: list[dict[str, Any]]) -> None:
    first, *rest = fragments
    assert first["index"] == 0 and first["id"].startswith("call_")
    assert first["type"] == "function" and first["function"]["name"] == "get_weather"
    assert len(rest) >= 3, fragments  # the arguments come in several pieces
    for fragment in rest:
        assert "id" not in fragment or fragment["id"] is None
        assert fragment["function"].get("name") is None
    joined = "".join(f["function"].get("arguments") or "" for f in fragments)
    assert json.loads(joined) == ARGUMENTS


@pytest.mark.parametrize("client", ["python", "node"])
@pytest.mark.parametrize(("where", "stream"), CASES)
def test_agent_loop(
    targets: dict[str, Target], token: str, client: str, where: str, stream: bool
) -> None:
    target = targets[where]
    before = len(target.upstream.received) if target.upstream else 0
    loop = _python_loop if client == "python" else _node_loop
    result = loop(target, token, stream)
    first, final = result["turns"]

    assert first["finish_reason"] == "tool_calls"
    [call] = first["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == ARGUMENTS
    if stream:
        _assert_fragments_as_openai_streams_them(first["fragments"])

    assert final["finish_reason"] == "stop"
    assert RESULT in final["message"]["content"]
    assert not final["message"].get("tool_calls")

    sent = result["sent"]
    assert len(sent) == 2
    # the follow-up turn carries the call and its result, as OpenAI requires
    assert sent[1]["messages"][1]["tool_calls"][0]["id"] == call["id"]
    assert sent[1]["messages"][2] == {"role": "tool", "tool_call_id": call["id"], "content": RESULT}
    if target.upstream is not None:
        received = list(target.upstream.received)[before:]
        assert [_owned_removed(r) for r in received] == [_owned_removed(s) for s in sent]


@pytest.mark.parametrize(("where", "stream"), CASES)
@pytest.mark.parametrize("forced", [False, True])
def test_node_sdk_run_tools_completes_the_loop(
    targets: dict[str, Target], token: str, where: str, stream: bool, forced: bool
) -> None:
    """``chat.completions.runTools``, the Node SDK's own agent loop: with a ``/tool`` prompt,
    or with ``tool_choice: "required"`` (arguments then built from the schema)."""
    target = targets[where]
    config = {
        "baseURL": target.base_url,
        "apiKey": token,
        "model": target.model,
        "stream": stream,
        "prompt": "What is the weather?"
        if forced
        else '/tool get_weather {"city": "Oslo", "days": 3}',
        **({"tool_choice": "required"} if forced else {}),
    }
    result = run_node("run_tools.mjs", json.dumps(config))
    [arguments] = result["calls"]
    if not forced:
        assert arguments == {"city": "Oslo", "days": 3}
    assert isinstance(arguments["city"], str) and arguments["days"] >= 1
    assert f"sunny in {arguments['city']} for {arguments['days']} days" in result["final"]
    roles = [m["role"] for m in result["messages"]]
    assert roles[-3:] == ["assistant", "tool", "assistant"]
