"""A non-streaming completion that outlives its path's budget: one clear 504, no SDK retry.

In AWS the budget (COMPLETION_TIMEOUT_S) sits inside the Lambda's timeout, inside API
Gateway's 30 s (asserted in tests/infrastructure); here a slow local model and a short
budget show what the client meets.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from core.settings import Settings
from functions.api.app import create_app
from tests.support.servers import ThreadServer


@pytest.fixture(scope="module")
def slow_api() -> Iterator[ThreadServer]:
    settings = Settings(local_ttft_ms=3000, local_token_delay_ms=0, completion_timeout_s=0.3)
    with ThreadServer(create_app(settings)) as server:
        yield server


def test_over_budget_is_a_504_naming_the_streaming_endpoint(
    slow_api: ThreadServer, token: str
) -> None:
    sent: list[httpx.Request] = []
    client = openai.OpenAI(
        base_url=f"{slow_api.url}/api/v1",
        api_key=token,
        max_retries=2,  # the SDK's default: it must not use them here
        http_client=httpx.Client(event_hooks={"request": [sent.append]}),
    )
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="local-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 504
    error = info.value.response.json()["error"]
    assert error["code"] == "completion_timeout"
    assert "/stream/v1/chat/completions" in error["message"]
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(sent) == 1  # the upstream generated once, not three times


def test_within_budget_completes(token: str) -> None:
    settings = Settings(local_ttft_ms=0, local_token_delay_ms=0, completion_timeout_s=5)
    with ThreadServer(create_app(settings)) as api:
        response = httpx.post(
            f"{api.url}/api/v1/chat/completions",
            json={"model": "local-model", "messages": [{"role": "user", "content": "/echo ok"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "ok"
