"""A chat request the local model cannot answer is refused at the create, on every path
(SPEC 9: "whatever it refuses it refuses with a 400 in OpenAI's shape naming the param"):
a streamed completion, a durable stream and a WebSocket ``chat.send`` answer as the
non-streaming completion does, not with a 200 and an error event after it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from websockets.asyncio.client import connect

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.support.servers import ProcessServer

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
]

# (request fields, the param the 400 names)
CASES: dict[str, tuple[dict[str, Any], str]] = {
    "tool_choice names an unknown function": (
        {
            "messages": [{"role": "user", "content": "hi"}],
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "launch"}},
        },
        "tool_choice",
    ),
    "/tool names a function not among tools": (
        {"messages": [{"role": "user", "content": '/tool launch {"at": 1}'}], "tools": TOOLS},
        "tools",
    ),
    "a tool message answers no call": (
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_nowhere", "content": "42"},
            ],
            "tools": TOOLS,
        },
        "messages[1].tool_call_id",
    ),
}


@pytest.fixture(scope="module")
def node(aws_env: dict[str, str]) -> Iterator[ProcessServer]:
    env = {
        **aws_env,
        "STREAMS_TABLE": f"streams-{uuid.uuid4().hex[:8]}",
        "LLM_PROVIDER": "local",
        "LOCAL_TTFT_MS": "5",
        "LOCAL_TOKEN_DELAY_MS": "1",
    }
    with ProcessServer("stream_service", env, health="/stream/healthz") as server:
        yield server


@pytest.fixture(scope="module")
def token() -> str:
    return DevTokens(DEV_SECRET_DEFAULT, 3600).mint("acceptance-tools")


def _body(case: str) -> dict[str, Any]:
    return {"model": "local-model", **CASES[case][0]}


@pytest.mark.parametrize("case", list(CASES))
def test_a_streamed_completion_is_a_400_naming_the_param(
    node: ProcessServer, token: str, case: str
) -> None:
    client = openai.OpenAI(base_url=f"{node.url}/stream/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        list(client.chat.completions.create(stream=True, **_body(case)))
    assert isinstance(info.value.body, dict)
    assert info.value.body["param"] == CASES[case][1]


@pytest.mark.parametrize("case", list(CASES))
def test_a_durable_stream_create_is_a_400_naming_the_param(
    node: ProcessServer, token: str, case: str
) -> None:
    response = httpx.post(
        f"{node.url}/stream/v1/streams",
        json=_body(case),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == CASES[case][1]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("case", list(CASES))
def test_a_websocket_chat_send_is_an_error_frame_and_no_stream(
    node: ProcessServer, token: str, case: str
) -> None:
    async def run() -> list[dict[str, Any]]:
        url = node.url.replace("http://", "ws://") + "/stream/v1/ws"
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "chat.send", "ref": "r1", **_body(case)}))
            frames: list[dict[str, Any]] = []
            async with asyncio.timeout(20):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] in ("pong", "ping"):
                        continue
                    frames.append(frame)
                    if frame["type"] == "error" or frame["type"] == "done":
                        return frames

    frames = asyncio.run(run())
    assert [f["type"] for f in frames] == ["error"], frames
    assert frames[0].get("ref") == "r1"
    assert frames[0]["code"] in ("invalid_value", "invalid_message")
