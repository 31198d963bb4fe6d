"""What the local model refuses in a tool request is an HTTP 400 naming the param on the
streaming paths too (SPEC 9: "Whatever it refuses it refuses with a 400"), checked before
the stream starts: never a 200 followed by an error event."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.integration.agent.conftest import Target

TOOLS: Any = [
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
]
BAD = {
    "model": "local-model",
    "messages": [{"role": "user", "content": '/tool launch {"at": "noon"}'}],
    "tools": TOOLS,
}


def test_a_streamed_bad_tool_call_is_a_400_before_any_event(
    targets: dict[str, Target], token: str
) -> None:
    client = openai.OpenAI(base_url=targets["stream-local"].base_url, api_key=token, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(stream=True, **BAD)
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "tools"


def test_a_durable_stream_with_a_bad_tool_call_is_refused_with_a_400(
    targets: dict[str, Target], token: str
) -> None:
    base = targets["stream-local"].base_url  # .../stream/v1
    created = httpx.post(
        f"{base}/streams", json=BAD, headers={"authorization": f"Bearer {token}"}, timeout=30
    )
    assert created.status_code == 400, created.text
    assert created.json()["error"]["param"] == "tools"
