"""SPEC 9 on the REST app and in batches, with the official ``openai`` SDK, against an
OpenAI-compatible upstream started by the test (it behaves as OpenAI does: tool calls only
when sent ``tools``, a 400 for a conversation whose tool calls were lost)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from core.settings import Settings
from devstack.batch_worker import LocalBatchWorker
from devstack.upstream import ScriptedUpstream
from functions.api.app import create_app
from tests.integration.batch.conftest import TERMINAL, fast, jsonl, wait_for
from tests.support.servers import ThreadServer

MODEL = "upstream-model"
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
ASK = [{"role": "user", "content": '/tool get_weather {"city": "Oslo"}'}]


@pytest.fixture
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.0, interval_s=0.0)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture
def upstream_settings(
    settings: Settings, upstream: tuple[ScriptedUpstream, ThreadServer]
) -> Settings:
    return settings.model_copy(
        update={
            "llm_provider": "openai",
            "openai_api_key": SecretStr("sk-test"),
            "openai_base_url": f"{upstream[1].url}/v1",
            "openai_max_retries": 0,
        }
    )


@pytest.fixture
def api(upstream_settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(upstream_settings)) as server:
        yield server


def test_rest_agent_loop_forwards_tools_and_returns_tool_calls(
    api: ThreadServer, upstream: tuple[ScriptedUpstream, ThreadServer], token: str
) -> None:
    app, _ = upstream
    client = openai.OpenAI(base_url=f"{api.url}/api/v1", api_key=token, max_retries=0)
    first = client.chat.completions.create(
        model=MODEL,
        messages=ASK,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice="auto",
        seed=11,
        metadata={"trace": "t1"},
        extra_body={"x_vendor": {"keep": [1, 2]}},
    )
    sent = app.received[-1]
    assert sent["tools"] == TOOLS and sent["seed"] == 11 and sent["tool_choice"] == "auto"
    assert sent["metadata"] == {"trace": "t1"} and sent["x_vendor"] == {"keep": [1, 2]}
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}

    # the follow-up turn reaches the upstream with the assistant's tool_calls and the
    # tool message's tool_call_id (an upstream answers 400 to a conversation without them)
    follow = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "12 degrees and sunny"},
    ]
    final = client.chat.completions.create(model=MODEL, messages=follow, tools=TOOLS)  # type: ignore[arg-type]
    assert app.received[-1]["messages"][1]["tool_calls"][0]["id"] == call.id
    assert app.received[-1]["messages"][2]["tool_call_id"] == call.id
    assert final.choices[0].finish_reason == "stop"
    assert "12 degrees and sunny" in (final.choices[0].message.content or "")


def test_image_parts_reach_the_upstream_byte_for_byte(
    api: ThreadServer, upstream: tuple[ScriptedUpstream, ThreadServer], token: str
) -> None:
    app, _ = upstream
    parts = [
        {"type": "text", "text": "what is in it?"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
        },
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    body = {"model": MODEL, "messages": [{"role": "user", "content": parts}], "max_tokens": 3}
    response = httpx.post(
        f"{api.url}/api/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert app.received[-1]["messages"][0]["content"] == parts


@pytest.mark.parametrize("where", ["messages", "tools", "metadata"])
def test_deeply_nested_json_is_a_400_not_a_500(api: ThreadServer, token: str, where: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    if where == "messages":
        raw = f'{{"model": "{MODEL}", "messages": {deep}}}'
    else:
        raw = f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "x"}}], "{where}": {deep}}}'
    response = httpx.post(
        f"{api.url}/api/v1/chat/completions",
        content=raw.encode(),
        headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"


def test_batch_lines_with_tools_return_the_full_completion(
    upstream_settings: Settings, upstream: tuple[ScriptedUpstream, ThreadServer], token: str
) -> None:
    app, _ = upstream
    settings = fast(upstream_settings)
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": MODEL,
                "messages": [{"role": "user", "content": f'/tool get_weather {{"city": "C{i}"}}'}],
                "tools": TOOLS,
                "parallel_tool_calls": False,
                "x_vendor": i,
            },
        }
        for i in range(3)
    ]
    with (
        ThreadServer(create_app(settings)) as api,
        LocalBatchWorker(settings, wait_s=1, sweep_every_s=1.0),
    ):
        client = openai.OpenAI(base_url=f"{api.url}/api/v1", api_key=token, max_retries=0)
        uploaded = client.files.create(file=("tools.jsonl", jsonl(lines)), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        done = wait_for(client, batch.id, lambda b: b.status in TERMINAL)
        assert done.status == "completed" and done.output_file_id
        out = [
            json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()
        ]
    sent = sorted(app.received, key=lambda r: r["x_vendor"])
    assert [r["tools"] for r in sent] == [TOOLS] * 3
    assert [r["parallel_tool_calls"] for r in sent] == [False] * 3
    by_id = {line["custom_id"]: line["response"]["body"] for line in out}
    for i in range(3):
        choice = by_id[f"c{i}"]["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        (call,) = choice["message"]["tool_calls"]
        assert json.loads(call["function"]["arguments"]) == {"city": f"C{i}"}
