"""Who may open a voice socket: a bearer JWT (the SDK), or a browser's subprotocols with a
client secret minted by ``POST /api/v1/realtime/client_secrets`` on the REST API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import openai
import pytest
import websockets
from openai import AsyncOpenAI

from core.auth.dev import DevTokens
from core.auth.realtime_keys import RealtimeKeys
from core.settings import Settings
from functions.api.app import create_app
from tests.integration.realtime.conftest import MODEL, ws_base
from tests.integration.realtime.raw import open_voice, recv
from tests.support.servers import ProcessServer, ThreadServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api() -> Iterator[ThreadServer]:
    with ThreadServer(create_app(Settings(llm_provider="local"))) as server:
        yield server


def voice_url(node: ProcessServer, **query: str) -> str:
    return f"{ws_base(node)}/realtime?{urlencode({'model': MODEL, **query})}"


async def first_event(ws: websockets.ClientConnection) -> dict[str, Any]:
    return dict(json.loads(await ws.recv(decode=True)))


async def test_a_browser_opens_the_socket_with_a_client_secret_from_the_api(
    api: ThreadServer, voice_node: ProcessServer, tokens: DevTokens
) -> None:
    client = AsyncOpenAI(api_key=tokens.mint("alice"), base_url=api.url + "/api/v1")
    secret = await client.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 60},
        session={"type": "realtime", "instructions": "Speak like a pirate."},
    )
    assert secret.value.startswith("ek_")
    assert abs(secret.expires_at - (time.time() + 60)) < 5
    assert secret.session.instructions == "Speak like a pirate."

    offered = ["realtime", f"openai-insecure-api-key.{secret.value}"]
    async with websockets.connect(voice_url(voice_node), subprotocols=offered) as ws:
        assert ws.subprotocol == "realtime"  # Chromium fails the handshake without it
        created = await first_event(ws)
        assert created["type"] == "session.created"
        assert created["session"]["instructions"] == "Speak like a pirate."

    with pytest.raises(openai.BadRequestError):
        await client.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 99_999}
        )
    anonymous = AsyncOpenAI(api_key="not-a-token", base_url=api.url + "/api/v1")
    with pytest.raises(openai.AuthenticationError):
        await anonymous.realtime.client_secrets.create()


@pytest.mark.parametrize(
    ("credential", "code"),
    [
        ("none", "missing_api_key"),
        ("jwt-in-subprotocol", "invalid_api_key"),
        ("expired-secret", "token_expired"),
        ("forged-secret", "invalid_signature"),
    ],
)
async def test_bad_credentials_get_an_error_event_and_a_close(
    voice_node: ProcessServer, tokens: DevTokens, keys: RealtimeKeys, credential: str, code: str
) -> None:
    offered = ["realtime"]
    if credential == "jwt-in-subprotocol":
        offered.append(f"openai-insecure-api-key.{tokens.mint('alice')}")
    elif credential == "expired-secret":
        expired = keys.mint("alice", ttl_s=-5)
        offered.append(f"openai-insecure-api-key.{expired.value}")
    elif credential == "forged-secret":
        forged = RealtimeKeys("some-other-secret-0123456789abcdef").mint("alice", 60)
        offered.append(f"openai-insecure-api-key.{forged.value}")
    async with websockets.connect(voice_url(voice_node), subprotocols=offered) as ws:
        event = await first_event(ws)
        assert event["type"] == "error"
        assert event["error"]["code"] == code
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_secret_with_a_bad_session_is_an_error_and_a_1008_never_a_1011(
    voice_node: ProcessServer, keys: RealtimeKeys
) -> None:
    """A client's mistake: the SDKs retry 1011 (five reconnects for nothing), not 1008."""
    secret = keys.mint("alice", 60, {"type": "realtime", "output_modalities": ["video"]})
    ws = await open_voice(voice_node, secret.value)
    error = await recv(ws)
    with pytest.raises(websockets.ConnectionClosed):
        await recv(ws)
    assert error["type"] == "error" and error["error"]["code"] == "invalid_value"
    assert ws.close_code == 1008


async def test_client_secrets_checks_the_session_and_answers_it_whole(
    api: ThreadServer, voice_node: ProcessServer, tokens: DevTokens
) -> None:
    client = AsyncOpenAI(api_key=tokens.mint("alice"), base_url=api.url + "/api/v1")
    bad: list[tuple[dict[str, Any], str, str]] = [
        (
            {"type": "realtime", "output_modalities": ["video"]},
            "invalid_value",
            "session.output_modalities[0]",
        ),
        ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice"),
        (
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/wav"}}}},
            "invalid_value",
            "session.audio.input.format.type",
        ),
    ]
    for session, code, param in bad:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.realtime.client_secrets.create(session=session)  # type: ignore[arg-type]
        assert (caught.value.code, caught.value.param) == (code, param)

    secret = await client.realtime.client_secrets.create(
        session={"type": "realtime", "output_modalities": ["text"]}
    )
    session = secret.session
    assert session.id.startswith("sess_")
    assert session.output_modalities == ["text"]
    assert session.audio.input.turn_detection.type == "server_vad"  # the defaults are there
    assert session.audio.output.voice == "alloy"
    offered = ["realtime", f"openai-insecure-api-key.{secret.value}"]
    async with websockets.connect(voice_url(voice_node), subprotocols=offered) as ws:
        created = await first_event(ws)
    assert created["session"]["id"] == session.id
    assert created["session"]["output_modalities"] == ["text"]
