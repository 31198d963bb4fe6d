"""The official ``openai`` SDK against the REST app, unchanged but for the base URL."""

from __future__ import annotations

import httpx
import openai
import pytest

from core.providers.local import script_reply
from core.schemas.chat import ChatCompletionRequest, ChatMessage
from tests.support.servers import ThreadServer


def test_sdk_completion_and_models(api_server: ThreadServer) -> None:
    token = httpx.post(f"{api_server.url}/api/v1/dev/token", json={"sub": "alice"}).json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] > 0
    client = openai.OpenAI(base_url=f"{api_server.url}/api/v1", api_key=token["access_token"])

    models = [m.id for m in client.models.list()]
    assert "local-model" in models
    assert client.models.retrieve("local-model").id == "local-model"

    completion = client.chat.completions.create(
        model="local-model",
        messages=[{"role": "user", "content": "What makes streaming feel fast?"}],
        max_tokens=12,
    )
    expected, reason = script_reply(
        ChatCompletionRequest(
            model="local-model",
            messages=[ChatMessage(role="user", content="What makes streaming feel fast?")],
            max_tokens=12,
        )
    )
    assert completion.choices[0].message.content == "".join(expected)
    assert completion.choices[0].finish_reason == reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 12
    assert completion.object == "chat.completion"


def test_sdk_maps_errors_to_its_exceptions(api_server: ThreadServer, token: str) -> None:
    client = openai.OpenAI(base_url=f"{api_server.url}/api/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="local-model", messages=[{"role": "user", "content": "x"}], stream=True
        )
    assert "/stream/v1/chat/completions" in bad.value.message
    anonymous = openai.OpenAI(
        base_url=f"{api_server.url}/api/v1", api_key="not-a-token", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
