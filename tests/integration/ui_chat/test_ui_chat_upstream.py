"""What reaches the upstream from a useChat request: the UI messages as the SDK's
``convertToModelMessages`` + its OpenAI chat provider would send them, and the body's other
fields (``tools``...) as sent. A node on an OpenAI-compatible upstream that records bodies."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.ui_chat.conftest import chat_id, ui
from tests.support.node import run_node
from tests.support.servers import ProcessServer, ThreadServer

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4 fake").decode()
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
CONVERSATION: list[dict[str, Any]] = [
    {"id": "s1", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
    {
        "id": "u1",
        "role": "user",
        "parts": [
            {"type": "text", "text": "What is in this picture, "},
            {"type": "text", "text": "and the weather in Paris?"},
            {"type": "file", "mediaType": "image/png", "url": PNG, "filename": "a.png"},
            {"type": "file", "mediaType": "application/pdf", "url": PDF, "filename": "doc.pdf"},
            {"type": "data-note", "data": {"ignored": True}},
        ],
    },
    {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "The user wants two things.", "state": "done"},
            {"type": "text", "text": "Let me look that up.", "state": "done"},
            {
                "type": "tool-get_weather",
                "toolCallId": "call_1",
                "state": "output-available",
                "input": {"city": "Paris"},
                "output": {"temp_c": 21, "sky": "clear"},
            },
            {
                "type": "tool-get_weather",
                "toolCallId": "call_2",
                "state": "output-error",
                "input": {"city": "Lyon"},
                "errorText": "service down",
            },
            {"type": "step-start"},
            {"type": "text", "text": "Paris: 21 C and clear.", "state": "done"},
        ],
    },
    {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "/echo thanks"}]},
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.02, interval_s=0.01, default_tokens=5)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def node(
    aws_env: dict[str, str], upstream: tuple[ScriptedUpstream, ThreadServer]
) -> Iterator[ProcessServer]:
    _, server = upstream
    env = {
        **aws_env,
        "STREAMS_TABLE": f"streams-uiu-{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": f"{server.url}/v1",
        "OPENAI_MAX_RETRIES": "0",
    }
    with ProcessServer("stream_service", env, health="/stream/healthz") as started:
        yield started


def openai_messages(model_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The AI SDK OpenAI chat provider's mapping of model messages (as in vercel/ai's
    packages/openai/src/chat/convert-to-openai-chat-messages.ts), for the parts used here."""
    out: list[dict[str, Any]] = []
    for message in model_messages:
        role, content = message["role"], message["content"]
        if role == "system":
            out.append({"role": "system", "content": content})
        elif role == "user":
            if len(content) == 1 and content[0]["type"] == "text":
                out.append({"role": "user", "content": content[0]["text"]})
                continue
            parts = []
            for part in content:
                if part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif part["mediaType"].startswith("image/"):
                    parts.append({"type": "image_url", "image_url": {"url": part["data"]["url"]}})
                else:
                    file = {"filename": part["filename"], "file_data": part["data"]["url"]}
                    parts.append({"type": "file", "file": file})
            out.append({"role": "user", "content": parts})
        elif role == "assistant":
            text = "".join(p["text"] for p in content if p["type"] == "text")
            calls = [
                {
                    "id": p["toolCallId"],
                    "type": "function",
                    "function": {
                        "name": p["toolName"],
                        "arguments": json.dumps(p["input"], separators=(",", ":")),
                    },
                }
                for p in content
                if p["type"] == "tool-call"
            ]
            entry: dict[str, Any] = {
                "role": "assistant",
                "content": (text or None) if calls else text,
            }
            if calls:
                entry["tool_calls"] = calls
            out.append(entry)
        else:
            for result in content:
                output = result["output"]
                value = output["value"]
                text = (
                    value
                    if output["type"] in ("text", "error-text")
                    else json.dumps(value, separators=(",", ":"))
                )
                out.append({"role": "tool", "tool_call_id": result["toolCallId"], "content": text})
    return out


def test_ui_messages_reach_the_upstream_as_the_sdk_would_send_them(
    node: ProcessServer, upstream: tuple[ScriptedUpstream, ThreadServer], tokens: DevTokens
) -> None:
    app, _ = upstream
    out = ui(
        "send",
        base=node.url,
        token=tokens.mint("alice"),
        model="upstream-model",
        chatId=chat_id(),
        messages=CONVERSATION,
        body={"tools": TOOLS, "tool_choice": "auto", "temperature": 0.5, "seed": 7},
    )
    assert out["failure"] is None and out["errors"] == [], out
    assert types_of(out)[-1] == "finish"
    sent = app.last_request
    assert sent is not None
    model_messages = run_node("ui_convert.mjs", json.dumps(CONVERSATION))
    assert sent["messages"] == openai_messages(model_messages)
    # every other field of the body, as the client sent it; the transport's own stay out
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto"
    assert sent["temperature"] == 0.5 and sent["seed"] == 7 and sent["stream"] is True
    for own in ("id", "trigger", "messageId"):
        assert own not in sent


def types_of(out: dict[str, Any]) -> list[str]:
    return [c["type"] for c in out["chunks"]]


def test_a_file_type_openai_does_not_take_is_a_400(node: ProcessServer, tokens: DevTokens) -> None:
    import httpx

    body = {
        "id": chat_id(),
        "model": "upstream-model",
        "messages": [
            {
                "id": "u1",
                "role": "user",
                "parts": [
                    {"type": "text", "text": "read this"},
                    {"type": "file", "mediaType": "text/csv", "url": "data:text/csv;base64,YQ=="},
                ],
            }
        ],
    }
    headers = {"authorization": f"Bearer {tokens.mint('alice')}"}
    answer = httpx.post(f"{node.url}/stream/v1/ui/chat", json=body, headers=headers, timeout=30)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == "messages[0].parts[1]" and "text/csv" in error["message"]
    for bad, param in (({**body, "id": ""}, "id"), ({**body, "messages": []}, "messages")):
        answer = httpx.post(f"{node.url}/stream/v1/ui/chat", json=bad, headers=headers, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    # SPEC 11: the per-request grace is checked here as on every stream entry
    text_only = {
        **body,
        "messages": [{"id": "u2", "role": "user", "parts": [body["messages"][0]["parts"][0]]}],
    }
    for grace in ("-1", "100000", "soon"):
        answer = httpx.post(
            f"{node.url}/stream/v1/ui/chat",
            json={**text_only, "id": chat_id()},
            headers={**headers, "X-Resume-Grace-S": grace},
            timeout=30,
        )
        assert answer.status_code == 400, (grace, answer.text)
        assert answer.json()["error"]["param"] == "X-Resume-Grace-S"


def test_reasoning_and_refusals_reach_the_page(node: ProcessServer, tokens: DevTokens) -> None:
    """The upstream's reasoning_content streams as reasoning-* chunks before the answer's
    text part; a refusal shows as text (the page has nothing else to show it with)."""
    token = tokens.mint("alice")
    out = ui(
        "send",
        base=node.url,
        token=token,
        model="upstream-model",
        chatId=chat_id(),
        text="/reason Two steps first.",
    )
    assert out["errors"] == [], out
    kinds = types_of(out)
    assert kinds[2] == "reasoning-start" and "reasoning-end" in kinds
    assert kinds.index("reasoning-end") < kinds.index("text-start")
    parts = out["message"]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text"]
    assert parts[1]["text"] == "Two steps first." and parts[2]["text"]
    refused = ui(
        "send",
        base=node.url,
        token=token,
        model="upstream-model",
        chatId=chat_id(),
        text="/refuse I cannot help with that.",
    )
    assert refused["text"] == "I cannot help with that."
