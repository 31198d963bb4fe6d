"""Tool calls through the AI SDK: the local model's ``/tool NAME {JSON}`` streamed as
tool_calls fragments become tool-input-* chunks and a tool part; the page's output goes
back as a tool message and the model answers with it, in the same assistant message."""

from __future__ import annotations

import json

from core.auth.dev import DevTokens
from tests.integration.ui_chat.conftest import chat_id, types, ui
from tests.support.servers import ProcessServer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CALL = '/tool get_weather {"city": "Paris", "unit": "celsius"}'


def test_a_tool_call_is_tool_input_chunks(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    chat, token = chat_id(), tokens.mint("alice")
    out = ui("send", base=a.url, token=token, chatId=chat, text=CALL, body={"tools": TOOLS})
    assert out["failure"] is None and out["errors"] == [], out
    chunks = out["chunks"]
    kinds = types(chunks)
    start = chunks[kinds.index("tool-input-start")]
    assert start["toolName"] == "get_weather" and start["toolCallId"]
    deltas = [c for c in chunks if c["type"] == "tool-input-delta"]
    assert len(deltas) >= 2  # the arguments come in fragments
    arguments = "".join(c["inputTextDelta"] for c in deltas)
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    available = chunks[kinds.index("tool-input-available")]
    assert available["toolCallId"] == start["toolCallId"]
    assert available["input"] == {"city": "Paris", "unit": "celsius"}
    assert kinds[-2:] == ["finish-step", "finish"] and chunks[-1]["finishReason"] == "tool-calls"
    part = next(p for p in out["message"]["parts"] if p["type"] == "tool-get_weather")
    assert part["state"] == "input-available" and part["input"]["city"] == "Paris"
    # the resume of a tool reply on the other node: the very same chunks
    again = ui("resume", base=b.url, token=token, chatId=chat)
    assert again["chunks"] == chunks


def test_the_page_runs_the_tool_and_the_model_answers_with_its_output(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, _ = cluster
    out = ui(
        "toolLoop",
        base=a.url,
        token=tokens.mint("alice"),
        chatId=chat_id(),
        text=CALL,
        tools=TOOLS,
        output={"temp_c": 21, "sky": "clear"},
    )
    assert out["status"] == "ready" and out["error"] is None, out
    messages = out["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]  # continued, not a second one
    parts = messages[1]["parts"]
    kinds = [p["type"] for p in parts]
    assert kinds[:2] == ["step-start", "tool-get_weather"] and "text" in kinds
    assert parts[1]["state"] == "output-available"
    answer = "".join(p["text"] for p in parts if p["type"] == "text")
    assert "21" in answer and "clear" in answer
